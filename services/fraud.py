"""Reference service `fraud`: screens every placed order, in parallel with payment.

Run it with `choreo run fraud`. Contract (SPEC §7):

- OrderPlaced → FraudCheckPassed (with the job's deadline, which shipping checks) or FraudCheckFailed
  for ``fraud-`` customers.
- ``slow-`` customers: the simulated bureau never answers. The check raises FraudCheckPending (a
  RetryableError) while now < the job's deadline, so the event goes round the retry topics; once past
  the deadline it gives up and emits nothing. The order then expires by its own timer (the order
  service), and payment and inventory compensate.

Stateless: the verdict is a pure function of the event and the clock, so a re-run decides the same
(the clock only matters for ``slow-`` customers, whose outcome is "nothing" either way).
"""

from __future__ import annotations

from datetime import UTC, datetime

from choreo import Context, Service
from choreo.config import get_settings
from choreo.retry import RetryPolicy
from services.events import FraudCheckFailed, FraudCheckPassed, OrderPlaced
from services.rules import fraud_decision, fraud_score, job_deadline

# A slow check must keep retrying past the job's deadline (30 s by default) so it gives up on its own
# rather than being dead-lettered: 0.5+1+2+4+8+16 = 31.5 s passes a 30 s deadline on the 7th attempt,
# and the two last levels stretch the budget to 121.5 s for jobs with a longer max_ttl_s. Short first
# delays keep the gap after the deadline small; eight levels means eight retry topics, no more.
FRAUD_RETRY = RetryPolicy(delays=(0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 60.0), jitter=0.05)

service = Service("fraud", retry=FRAUD_RETRY, ordered_retries=True)


@service.handler(OrderPlaced)
def screen(order: OrderPlaced, ctx: Context) -> FraudCheckPassed | FraudCheckFailed | None:
    deadline = job_deadline(order.placed_at, order.deadline, get_settings().job_max_ttl_s)
    verdict = fraud_decision(order.customer_id, datetime.now(UTC), deadline)  # may raise FraudCheckPending
    score = fraud_score(order.customer_id)
    if verdict == "fail":
        return FraudCheckFailed(order_id=order.order_id, score=score, reason="customer on the block list")
    if verdict == "give-up":
        ctx.log.warning("fraud check for %s gave up at the deadline (attempt %d)", order.order_id, ctx.attempt)
        return None
    return FraudCheckPassed(order_id=order.order_id, score=score, deadline=deadline)
