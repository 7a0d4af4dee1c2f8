"""Reference service `shipping`: dispatches an order once its stock is held AND the fraud check passed.

Run it with `choreo run shipping`. Contract (SPEC §7):

- A framework join of StockReserved and FraudCheckPassed per order (any order of arrival, within
  60 s of the first) → ShipmentDispatched; the shipment id derives from the order id.
- Refuses to dispatch (ShipmentFailed instead) when the order was already cancelled or expired, or
  when now ≥ deadline − 1 s: a shipment must never leave for an order that is about to expire.
- The join's time limit passing with a part missing → ShipmentFailed ``join-timeout``, unless the order
  was closed meanwhile (then the missing part is explained and nothing is emitted).
- OrderCancelled / OrderExpired → a row in ``shipping_closed`` (the tombstone the join consults).

- On dispatch the join reads the job's shared state (SPEC §5, written by the Order API): the delivery
  country picks the carrier and the transit time (:func:`services.rules.shipping_route`), and the
  destination is recorded. No delivery details (or shared state off: no ``CHOREO_SERVICE_TOKEN``) →
  the default route. The read failing → ``DeliveryUnavailable`` (retryable: the join's part is retried).
  The Order API writes the details before it publishes OrderPlaced, so they are there when the join
  completes (no details then means the order had none).

State: ``shipping_shipments`` (one row per order: status ``dispatched`` | ``failed``, reason),
``shipping_destinations`` (where a dispatched order goes and which carrier, ``source`` = ``shared-state``
| ``default``) and ``shipping_closed`` (orders called off, with why), written in the join's / handler's
transaction.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from choreo import Context, Service
from choreo.config import get_settings
from choreo.errors import RetryableError
from choreo.join import Joined
from choreo.retry import RetryPolicy
from choreo.shared_state import SharedStateUnavailable, optional_shared_state
from choreo.state import execute, fetchone
from services.events import (
    FraudCheckPassed,
    OrderCancelled,
    OrderExpired,
    ShipmentDispatched,
    ShipmentFailed,
    StockReserved,
)
from services.rules import DEFAULT_CARRIER, DELIVERY_KEY, DOMESTIC_TRANSIT, earliest, may_ship, shipping_route, to_ms

JOIN_WITHIN = timedelta(seconds=60)
CARRIER = DEFAULT_CARRIER  # without delivery details
DELIVERY_TIME = DOMESTIC_TRANSIT

STATE_DDL = (
    """CREATE TABLE IF NOT EXISTS shipping_shipments (
        order_id    TEXT PRIMARY KEY,
        shipment_id TEXT,
        status      TEXT NOT NULL,
        reason      TEXT,
        updated_at  BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS shipping_closed (
        order_id  TEXT PRIMARY KEY,
        reason    TEXT NOT NULL,
        closed_at BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS shipping_destinations (
        order_id   TEXT PRIMARY KEY,
        carrier    TEXT NOT NULL,
        country    TEXT,
        postcode   TEXT,
        city       TEXT,
        source     TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )""",
)


class DeliveryUnavailable(RetryableError):
    """The job's shared state could not be read: retry the dispatch later."""

# Dispatch reads the job's shared state from the progress service: its retries (15.5 s in all, inside
# the job's default 30 s deadline) outlast a restart of that service instead of dead-lettering the step.
service = Service("shipping", retry=RetryPolicy(delays=(0.5, 1.0, 2.0, 4.0, 8.0)), ordered_retries=True,
                  state_ddl=STATE_DDL)


def _closed_reason(ctx: Context, order_id: str) -> str | None:
    row = fetchone(ctx.tx, "SELECT reason FROM shipping_closed WHERE order_id = ?", (order_id,))
    return None if row is None else str(row[0])


def _already_decided(ctx: Context, order_id: str) -> bool:
    return fetchone(ctx.tx, "SELECT 1 FROM shipping_shipments WHERE order_id = ?", (order_id,)) is not None


def _fail(ctx: Context, order_id: str, reason: str) -> ShipmentFailed:
    execute(ctx.tx, "INSERT INTO shipping_shipments (order_id, status, reason, updated_at)"
                    " VALUES (?, 'failed', ?, ?)", (order_id, reason, to_ms(datetime.now(UTC))))
    return ShipmentFailed(order_id=order_id, reason=reason)


def delivery_of(ctx: Context) -> dict[str, Any] | None:
    """The job's delivery details from its shared state, or None (none written, or shared state off)."""
    state = optional_shared_state(get_settings(), ctx.correlation_id)
    if state is None:
        return None
    try:
        found = state.get()
    except SharedStateUnavailable as exc:
        raise DeliveryUnavailable(f"cannot read the delivery details: {exc}") from exc
    delivery = None if found is None else found[0].get(DELIVERY_KEY)
    return delivery if isinstance(delivery, dict) else None


def tracking_number(order_id: str) -> str:
    """Stable per order, so a re-run of the join emits the same shipment."""
    return "CP" + hashlib.sha256(order_id.encode()).hexdigest()[:12].upper()


def give_up(parts: Joined, ctx: Context) -> ShipmentFailed | None:
    """The time limit passed with a part missing: report it, unless the order was closed anyway."""
    present = next((part for part in parts if part is not None), None)
    order_id = getattr(present, "order_id", None) or ctx.key
    if order_id is None or _already_decided(ctx, order_id) or _closed_reason(ctx, order_id) is not None:
        return None
    missing = ",".join(t.__name__ for t in parts.missing)
    ctx.log.warning("join for order %s timed out waiting for %s", order_id, missing)
    return _fail(ctx, order_id, "join-timeout")


@service.join(StockReserved, FraudCheckPassed, within=JOIN_WITHIN, on_timeout=give_up)
def ship(parts: Joined, ctx: Context) -> ShipmentDispatched | ShipmentFailed | None:
    """Both parts are in: dispatch, unless the order is closed or too close to its deadline."""
    reserved: StockReserved
    fraud: FraudCheckPassed
    reserved, fraud = parts  # declared order; both present when the join completes
    order_id = reserved.order_id
    if _already_decided(ctx, order_id):
        return None
    closed = _closed_reason(ctx, order_id)
    if closed is not None:
        return _fail(ctx, order_id, f"order-{closed}")
    now = datetime.now(UTC)
    if not may_ship(now, earliest(reserved.deadline, fraud.deadline)):
        return _fail(ctx, order_id, "deadline")
    delivery = delivery_of(ctx) or {}
    carrier, transit = shipping_route(delivery.get("country"))
    shipment_id = f"shp-{order_id}"
    execute(ctx.tx, "INSERT INTO shipping_shipments (order_id, shipment_id, status, updated_at)"
                    " VALUES (?, ?, 'dispatched', ?)", (order_id, shipment_id, to_ms(now)))
    execute(ctx.tx, "INSERT INTO shipping_destinations (order_id, carrier, country, postcode, city, source,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (order_id, carrier, _text(delivery.get("country")), _text(delivery.get("postcode")),
             _text(delivery.get("city")), "shared-state" if delivery else "default", to_ms(now)))
    return ShipmentDispatched(order_id=order_id, shipment_id=shipment_id, carrier=carrier,
                              tracking_number=tracking_number(order_id),
                              estimated_delivery_at=now + transit)


def _text(value: object) -> str | None:
    """A string field of the shared state as stored (anything else: unknown)."""
    return value[:200] if isinstance(value, str) else None


def _close(order_id: str, reason: str, ctx: Context) -> None:
    execute(ctx.tx, "INSERT INTO shipping_closed (order_id, reason, closed_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (order_id) DO NOTHING", (order_id, reason, to_ms(datetime.now(UTC))))


@service.handler(OrderCancelled, transactional=True)
def order_cancelled(event: OrderCancelled, ctx: Context) -> None:
    _close(event.order_id, "cancelled", ctx)


@service.handler(OrderExpired, transactional=True)
def order_expired(event: OrderExpired, ctx: Context) -> None:
    _close(event.order_id, "expired", ctx)
