"""Reference service `payment`: authorizes an order's amount, refunds it if the order is called off.

Run it with `choreo run payment`. Contract (SPEC §7):

- OrderPlaced → PaymentAuthorized (carrying the order's lines and deadline, so inventory reserves
  without a join) or PaymentDeclined (total over the card limit). ``flaky-`` customers' gateway fails
  on the first two attempts (RetryableError), so the event goes round the retry topics and then passes.
- OrderCancelled / OrderExpired → PaymentRefunded of exactly what was authorized, at most once. If no
  payment exists yet, a ``void-cancelled`` tombstone is written and a later OrderPlaced (a redelivery, a
  replayed dead letter) is refused: nothing is ever authorized for an order already called off.

State: one row per order in ``payment_payments`` (status ``authorized`` | ``declined`` | ``refunded`` |
``void-cancelled``), written in the handler's store transaction, so the decision, the processed mark and
the emitted event commit together. The first row for an order decides; later inputs only refund.
"""

from __future__ import annotations

from datetime import UTC, datetime

from choreo import Context, Service
from choreo.config import get_settings
from choreo.retry import RetryPolicy
from choreo.state import execute, fetchone
from services.events import (
    AuthorizedLine,
    OrderCancelled,
    OrderExpired,
    OrderPlaced,
    PaymentAuthorized,
    PaymentDeclined,
    PaymentRefunded,
)
from services.rules import CARD_LIMIT_MINOR, called_off_reason, job_deadline, payment_decision, quantities, to_ms

STATE_DDL = (
    """CREATE TABLE IF NOT EXISTS payment_payments (
        order_id     TEXT PRIMARY KEY,
        status       TEXT NOT NULL,
        payment_id   TEXT,
        amount_minor BIGINT NOT NULL DEFAULT 0,
        currency     TEXT,
        updated_at   BIGINT NOT NULL
    )""",
)

# A flaky order needs two retries: 0.5 s + 1 s keeps it well inside the job's 30 s TTL; a third, 2 s
# later, covers one more transient failure before the event is dead-lettered.
service = Service("payment", retry=RetryPolicy(delays=(0.5, 1.0, 2.0)), ordered_retries=True,
                  state_ddl=STATE_DDL)

__all__ = ["CARD_LIMIT_MINOR", "STATE_DDL", "service"]


def _status(ctx: Context, order_id: str) -> tuple[str, str | None, int, str | None] | None:
    row = fetchone(ctx.tx, "SELECT status, payment_id, amount_minor, currency FROM payment_payments"
                           " WHERE order_id = ?", (order_id,))
    return None if row is None else (row[0], row[1], int(row[2]), row[3])


@service.handler(OrderPlaced, transactional=True)
def authorize(order: OrderPlaced, ctx: Context) -> PaymentAuthorized | PaymentDeclined | None:
    """One decision per order; a tombstone (cancelled first) or an earlier decision means no new one."""
    existing = _status(ctx, order.order_id)
    if existing is not None:
        ctx.log.info("payment for %s already %s: nothing to authorize", order.order_id, existing[0])
        return None
    # Raises GatewayUnavailable for a flaky customer before anything is written (the tx rolls back anyway).
    decision = payment_decision(order.customer_id, order.total_minor, ctx.attempt)
    now = datetime.now(UTC)
    if decision == "decline":
        execute(ctx.tx, "INSERT INTO payment_payments (order_id, status, amount_minor, currency, updated_at)"
                        " VALUES (?, 'declined', 0, ?, ?)", (order.order_id, order.currency, to_ms(now)))
        return PaymentDeclined(order_id=order.order_id, reason="amount over card limit",
                               decline_code="limit", declined_at=now)
    payment_id = f"pay-{order.order_id}"  # derived from the order: a re-run decides the same
    execute(ctx.tx, "INSERT INTO payment_payments (order_id, status, payment_id, amount_minor, currency,"
                    " updated_at) VALUES (?, 'authorized', ?, ?, ?, ?)",
            (order.order_id, payment_id, order.total_minor, order.currency, to_ms(now)))
    lines = quantities((line.sku, line.quantity) for line in order.lines)
    return PaymentAuthorized(
        order_id=order.order_id, payment_id=payment_id, amount_minor=order.total_minor,
        currency=order.currency, authorized_at=now,
        lines=[AuthorizedLine(sku=sku, quantity=quantity) for sku, quantity in lines.items()],
        deadline=job_deadline(order.placed_at, order.deadline, get_settings().job_max_ttl_s),
    )


@service.handler(OrderCancelled, transactional=True)
@service.handler(OrderExpired, transactional=True)
def refund(event: OrderCancelled | OrderExpired, ctx: Context) -> PaymentRefunded | None:
    """Refund an authorization once; with no payment yet, leave a tombstone that refuses a later one."""
    order_id, reason = event.order_id, called_off_reason(event)
    existing = _status(ctx, order_id)
    now = datetime.now(UTC)
    if existing is None:
        execute(ctx.tx, "INSERT INTO payment_payments (order_id, status, updated_at)"
                        " VALUES (?, 'void-cancelled', ?)", (order_id, to_ms(now)))
        return None
    status, payment_id, amount_minor, currency = existing
    if status != "authorized":
        return None  # declined (nothing to refund), already refunded, or already tombstoned
    execute(ctx.tx, "UPDATE payment_payments SET status = 'refunded', updated_at = ?"
                    " WHERE order_id = ? AND status = 'authorized'", (to_ms(now), order_id))
    return PaymentRefunded(order_id=order_id, payment_id=payment_id or f"pay-{order_id}",
                           amount_minor=amount_minor, currency=currency or "", reason=reason,
                           refunded_at=now)
