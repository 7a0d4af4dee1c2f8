"""Reference service `payment`: authorizes the order's amount when an order is placed.

Run it with `choreo run payment`. Amounts above the card limit are declined; the saga compensates.
"""

from __future__ import annotations

from datetime import UTC, datetime

from choreo import Context, Service
from choreo.retry import RetryPolicy
from services.events import OrderPlaced, PaymentAuthorized, PaymentDeclined

CARD_LIMIT_MINOR = 500_000  # 5,000.00 in the order's currency

service = Service("payment", retry=RetryPolicy(delays=(1.0, 5.0, 25.0)), ordered_retries=True)


@service.handler(OrderPlaced)
def authorize(order: OrderPlaced, ctx: Context) -> PaymentAuthorized | PaymentDeclined:
    """One decision per order; the payment id derives from the order, so a re-run decides the same."""
    now = datetime.now(UTC)
    if order.total_minor > CARD_LIMIT_MINOR:
        return PaymentDeclined(order_id=order.order_id, reason="amount over card limit",
                               decline_code="limit", declined_at=now)
    return PaymentAuthorized(order_id=order.order_id, payment_id=f"pay-{order.order_id}",
                             amount_minor=order.total_minor, currency=order.currency, authorized_at=now)
