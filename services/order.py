"""Reference service `order`: takes orders over HTTP and closes each job with its outcome.

Run it with `choreo run order`: the Order API (SPEC §5, :mod:`services.order_api`) on
``CHOREO_ORDER_API_PORT`` (8000) beside the consumer. Contract (SPEC §7):

- ``POST /orders`` stores the order (``running``) and publishes OrderPlaced, the root of the job.
- OrderPlaced (its own event) → a durable ``deadline`` timer at the job's deadline carrying OrderExpired.
- PaymentDeclined / StockUnavailable / FraudCheckFailed → OrderCancelled with the reason code
  (``payment-declined``, ``stock-unavailable``, ``fraud-rejected``); ShipmentDispatched → OrderCompleted;
  the due deadline timer → OrderExpired. Each cancels the timer. The first terminal decision wins: once
  the order is not ``running`` every later input is a no-op, so the job has exactly one outcome.
- ShipmentFailed is recorded in the log only: shipping refuses near the deadline or for closed orders,
  and the deadline timer (or the terminal event already in flight) decides the outcome.

Inputs on different topics may overtake OrderPlaced (e.g. OrderPlaced published by a script that never
stored the row): a terminal event for an unknown order stores a stub row with its outcome, and a later
OrderPlaced fills the stub in without starting a timer.

State: ``order_orders``, one row per order (times as epoch ms), read by ``GET /orders/{id}``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from choreo import Context, Service
from choreo.api import ServiceApi
from choreo.config import get_settings
from choreo.retry import RetryPolicy
from choreo.state import execute, fetchone
from services.events import (
    FraudCheckFailed,
    OrderCancelled,
    OrderCompleted,
    OrderExpired,
    OrderPlaced,
    PaymentDeclined,
    ShipmentDispatched,
    ShipmentFailed,
    StockUnavailable,
)
from services.order_api import create_app
from services.order_state import STATE_DDL, lines_json
from services.rules import FRAUD_REJECTED, PAYMENT_DECLINED, STOCK_UNAVAILABLE, job_deadline, to_ms

DEADLINE_TIMER = "deadline"

# Its API publishes OrderPlaced; the saga comes back to it by design (it closes the jobs it starts).
service = Service("order", retry=RetryPolicy(delays=(0.5, 1.0, 2.0)), ordered_retries=True,
                  state_ddl=STATE_DDL, api=ServiceApi(create_app, port_setting="order_api_port"),
                  publishes=(OrderPlaced,), intended_cycles=True)


def _status(ctx: Context, order_id: str) -> tuple[str, str] | None:
    """(status, customer_id) of the stored order, or None."""
    row = fetchone(ctx.tx, "SELECT status, customer_id FROM order_orders WHERE order_id = ?", (order_id,))
    return None if row is None else (str(row[0]), str(row[1]))


@service.handler(OrderPlaced, transactional=True)
def start(order: OrderPlaced, ctx: Context) -> None:
    """Store the order if the API did not (and fill in a stub); arm the deadline while it runs."""
    deadline = job_deadline(order.placed_at, order.deadline, get_settings().job_max_ttl_s)
    stored = _status(ctx, order.order_id)
    if stored is None:
        execute(ctx.tx, "INSERT INTO order_orders (order_id, job_id, customer_id, status, lines, total_minor,"
                        " currency, placed_at, deadline) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                (order.order_id, ctx.correlation_id, order.customer_id, lines_json(order), order.total_minor,
                 order.currency, to_ms(order.placed_at), to_ms(deadline)))
        stored = ("running", order.customer_id)
    elif stored[1] == "":  # a stub written by a terminal event that overtook this one
        execute(ctx.tx, "UPDATE order_orders SET customer_id = ?, lines = ?, total_minor = ?, currency = ?,"
                        " placed_at = ?, deadline = ? WHERE order_id = ?",
                (order.customer_id, lines_json(order), order.total_minor, order.currency,
                 to_ms(order.placed_at), to_ms(deadline), order.order_id))
    if stored[0] == "running":
        ctx.schedule(OrderExpired(order_id=order.order_id, deadline=deadline, expired_at=deadline),
                     at=deadline, name=DEADLINE_TIMER)


def finish(order_id: str, status: str, reason: str | None, ctx: Context) -> bool:
    """Move a running order to ``status``; False (and nothing written) if it already finished."""
    now_ms = to_ms(datetime.now(UTC))
    stored = _status(ctx, order_id)
    if stored is None:
        execute(ctx.tx, "INSERT INTO order_orders (order_id, job_id, customer_id, status, reason, lines,"
                        " total_minor, currency, finished_at) VALUES (?, ?, '', ?, ?, '[]', 0, '', ?)",
                (order_id, ctx.correlation_id, status, reason, now_ms))
    elif stored[0] != "running":
        ctx.log.info("order %s already %s: %s ignored", order_id, stored[0], status)
        return False
    else:
        execute(ctx.tx, "UPDATE order_orders SET status = ?, reason = ?, finished_at = ?"
                        " WHERE order_id = ? AND status = 'running'", (status, reason, now_ms, order_id))
    ctx.cancel(DEADLINE_TIMER, order_id)
    return True


def _cancel(order_id: str, reason: str, ctx: Context) -> OrderCancelled | None:
    if not finish(order_id, "cancelled", reason, ctx):
        return None
    return OrderCancelled(order_id=order_id, reason=reason, cancelled_at=datetime.now(UTC))


@service.handler(PaymentDeclined, transactional=True)
def payment_declined(event: PaymentDeclined, ctx: Context) -> OrderCancelled | None:
    return _cancel(event.order_id, PAYMENT_DECLINED, ctx)


@service.handler(StockUnavailable, transactional=True)
def stock_unavailable(event: StockUnavailable, ctx: Context) -> OrderCancelled | None:
    return _cancel(event.order_id, STOCK_UNAVAILABLE, ctx)


@service.handler(FraudCheckFailed, transactional=True)
def fraud_rejected(event: FraudCheckFailed, ctx: Context) -> OrderCancelled | None:
    return _cancel(event.order_id, FRAUD_REJECTED, ctx)


@service.handler(ShipmentDispatched, transactional=True)
def shipped(event: ShipmentDispatched, ctx: Context) -> OrderCompleted | None:
    if not finish(event.order_id, "completed", None, ctx):
        return None
    return OrderCompleted(order_id=event.order_id, shipment_id=event.shipment_id, completed_at=datetime.now(UTC))


@service.handler(ShipmentFailed)
def shipment_failed(event: ShipmentFailed, ctx: Context) -> None:
    """No decision: the deadline timer (or a terminal event already on its way) closes the job."""
    ctx.log.info("shipment for order %s failed (%s); the deadline decides", event.order_id, event.reason)


@service.on_timer(OrderExpired)
def expire(event: OrderExpired, ctx: Context) -> OrderExpired | None:
    """The deadline passed: expire the order unless another outcome came first."""
    stored = _status(ctx, event.order_id)
    if stored is None or stored[0] != "running":
        return None
    now = datetime.now(UTC)
    execute(ctx.tx, "UPDATE order_orders SET status = 'expired', reason = 'expired', finished_at = ?"
                    " WHERE order_id = ? AND status = 'running'", (to_ms(now), event.order_id))
    return OrderExpired(order_id=event.order_id, deadline=event.deadline, expired_at=now)
