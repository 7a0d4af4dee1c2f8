"""Reference service `inventory`: reserves stock for paid orders, releases it if the order is called off.

Run it with `choreo run inventory`. Contract (SPEC §7):

- PaymentAuthorized → StockReserved for every line at once, or StockUnavailable naming the first SKU
  short of stock; never a partial reservation. SKUs are created on first sight: ``sold-out…`` with 0
  units, every other with 1,000,000.
- OrderCancelled / OrderExpired → StockReleased, at most once per reservation. With no reservation yet,
  a ``void-cancelled`` tombstone refuses a later PaymentAuthorized (the cancellation overtook it: they
  travel on different topics).
- ShipmentDispatched → the reservation is marked shipped.

State: ``inventory_stock`` (per SKU: ``available`` plus the counters ``reserved``, ``released``,
``shipped``, so ``reserved - released - shipped`` is what is held right now and, once every order has
finished, ``reserved - released = shipped``), and ``inventory_reservations`` (one row per order: status
``reserved`` | ``released`` | ``shipped`` | ``unavailable`` | ``void-cancelled``, and its lines).
Every change is written in the handler's store transaction, together with the processed mark.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from choreo import Context, Service
from choreo.errors import PermanentError, RetryableError
from choreo.retry import RetryPolicy
from choreo.state import execute, fetchall, fetchone
from services.events import (
    OrderCancelled,
    OrderExpired,
    PaymentAuthorized,
    ReservedLine,
    ShipmentDispatched,
    StockReleased,
    StockReserved,
    StockUnavailable,
)
from services.rules import called_off_reason, initial_stock, quantities, to_ms

STATE_DDL = (
    """CREATE TABLE IF NOT EXISTS inventory_stock (
        sku        TEXT PRIMARY KEY,
        available  BIGINT NOT NULL,
        reserved   BIGINT NOT NULL DEFAULT 0,
        released   BIGINT NOT NULL DEFAULT 0,
        shipped    BIGINT NOT NULL DEFAULT 0,
        updated_at BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS inventory_reservations (
        order_id       TEXT PRIMARY KEY,
        reservation_id TEXT,
        status         TEXT NOT NULL,
        lines          TEXT NOT NULL,
        updated_at     BIGINT NOT NULL
    )""",
)

# Its reservation comes back to it by design: ShipmentDispatched marks the reserved stock shipped.
service = Service("inventory", retry=RetryPolicy(delays=(0.5, 1.0, 2.0)), ordered_retries=True,
                  state_ddl=STATE_DDL, intended_cycles=True)


class StockContention(RetryableError):
    """Another member took the stock between the check and the update (PostgreSQL, several processes)."""


def _reservation(ctx: Context, order_id: str) -> tuple[str, str | None, dict[str, int]] | None:
    row = fetchone(ctx.tx, "SELECT status, reservation_id, lines FROM inventory_reservations"
                           " WHERE order_id = ?", (order_id,))
    return None if row is None else (row[0], row[1], dict(json.loads(row[2])))


def _record(ctx: Context, order_id: str, status: str, reservation_id: str | None,
            lines: dict[str, int]) -> None:
    execute(ctx.tx, "INSERT INTO inventory_reservations (order_id, reservation_id, status, lines, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
            (order_id, reservation_id, status, json.dumps(sorted(lines.items())), to_ms(datetime.now(UTC))))


def _set_status(ctx: Context, order_id: str, status: str) -> None:
    execute(ctx.tx, "UPDATE inventory_reservations SET status = ?, updated_at = ? WHERE order_id = ?",
            (status, to_ms(datetime.now(UTC)), order_id))


@service.handler(PaymentAuthorized, transactional=True)
def reserve(payment: PaymentAuthorized, ctx: Context) -> StockReserved | StockUnavailable | None:
    """All lines or none; a tombstone or an earlier decision for the order means nothing to do."""
    existing = _reservation(ctx, payment.order_id)
    if existing is not None:
        ctx.log.info("reservation for %s already %s", payment.order_id, existing[0])
        return None
    wanted = quantities((line.sku, line.quantity) for line in payment.lines)
    if not wanted:
        raise PermanentError(f"PaymentAuthorized for {payment.order_id} lists no lines: nothing to reserve")
    now_ms = to_ms(datetime.now(UTC))
    for sku in wanted:  # SKUs are created on first use; ON CONFLICT DO NOTHING runs on SQLite and PostgreSQL
        execute(ctx.tx, "INSERT INTO inventory_stock (sku, available, updated_at) VALUES (?, ?, ?)"
                        " ON CONFLICT (sku) DO NOTHING", (sku, initial_stock(sku), now_ms))
    marks = ",".join("?" * len(wanted))
    available = {sku: int(units) for sku, units in fetchall(
        ctx.tx, f"SELECT sku, available FROM inventory_stock WHERE sku IN ({marks})", list(wanted))}
    for sku, quantity in wanted.items():
        if available[sku] < quantity:
            _record(ctx, payment.order_id, "unavailable", None, wanted)
            return StockUnavailable(order_id=payment.order_id, sku=sku, requested=quantity,
                                    available=available[sku])
    for sku, quantity in wanted.items():
        cursor = execute(ctx.tx, "UPDATE inventory_stock SET available = available - ?, reserved = reserved + ?,"
                                 " updated_at = ? WHERE sku = ? AND available >= ?",
                         (quantity, quantity, now_ms, sku, quantity))
        if cursor.rowcount != 1:  # raising rolls back the lines already taken: still all or nothing
            raise StockContention(f"stock of {sku} changed while reserving for {payment.order_id}")
    reservation_id = f"res-{payment.order_id}"
    _record(ctx, payment.order_id, "reserved", reservation_id, wanted)
    return StockReserved(order_id=payment.order_id, reservation_id=reservation_id, deadline=payment.deadline,
                         lines=[ReservedLine(sku=sku, quantity=quantity) for sku, quantity in wanted.items()])


@service.handler(OrderCancelled, transactional=True)
@service.handler(OrderExpired, transactional=True)
def release(event: OrderCancelled | OrderExpired, ctx: Context) -> StockReleased | None:
    """Give a held reservation back once; with none yet, leave a tombstone that refuses a later one."""
    order_id, reason = event.order_id, called_off_reason(event)
    existing = _reservation(ctx, order_id)
    if existing is None:
        _record(ctx, order_id, "void-cancelled", None, {})
        return None
    status, reservation_id, lines = existing
    if status != "reserved":
        if status == "shipped":
            ctx.log.warning("order %s called off (%s) after its stock shipped: nothing to release", order_id, reason)
        return None
    now_ms = to_ms(datetime.now(UTC))
    for sku, quantity in lines.items():
        execute(ctx.tx, "UPDATE inventory_stock SET available = available + ?, released = released + ?,"
                        " updated_at = ? WHERE sku = ?", (quantity, quantity, now_ms, sku))
    _set_status(ctx, order_id, "released")
    return StockReleased(order_id=order_id, reservation_id=reservation_id or f"res-{order_id}", reason=reason)


@service.handler(ShipmentDispatched, transactional=True)
def mark_shipped(event: ShipmentDispatched, ctx: Context) -> None:
    """The held units leave the warehouse: counted as shipped, no longer releasable."""
    existing = _reservation(ctx, event.order_id)
    if existing is None or existing[0] != "reserved":
        ctx.log.warning("shipment %s for order %s without a held reservation (%s)", event.shipment_id,
                        event.order_id, existing[0] if existing else "none")
        return
    now_ms = to_ms(datetime.now(UTC))
    for sku, quantity in existing[2].items():
        execute(ctx.tx, "UPDATE inventory_stock SET shipped = shipped + ?, updated_at = ? WHERE sku = ?",
                (quantity, now_ms, sku))
    _set_status(ctx, event.order_id, "shipped")
