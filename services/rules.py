"""The reference shop's deterministic rules (SPEC §7), as pure functions the services call.

Kept apart from the handlers so each rule is unit-tested without a broker, and so a demo or a test can
aim at every outcome by choosing the input:

| input                                  | outcome                                                        |
|----------------------------------------|----------------------------------------------------------------|
| ``total_minor`` > 500000               | payment declines → cancelled ``payment-declined``              |
| a SKU starting with ``sold-out``       | inventory: unavailable → cancelled ``stock-unavailable``       |
| ``customer_id`` starting ``fraud-``    | fraud rejects → cancelled ``fraud-rejected``                   |
| ``customer_id`` starting ``flaky-``    | payment's gateway fails on attempts 1 and 2, then authorizes   |
| ``customer_id`` starting ``slow-``     | fraud check fails transiently until the deadline → expired     |
| anything else                          | completed                                                      |
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal

from choreo.errors import RetryableError
from services.events import OrderCancelled, OrderExpired

CARD_LIMIT_MINOR = 500_000  # 5,000.00 in the order's currency
AMPLE_STOCK = 1_000_000  # units a SKU starts with, created on first use
SOLD_OUT_PREFIX = "sold-out"
FLAKY_FAILED_ATTEMPTS = 2  # the gateway fails the first two deliveries of a flaky customer's order
SHIP_MARGIN = timedelta(seconds=1)  # no dispatch this close to the deadline: the order would expire first

# Shipping routes by the delivery country (the job's shared state, written by order): the home network
# carries within the EU, a partner elsewhere; no delivery details → the default route, as before.
DELIVERY_KEY = "delivery"  # the key order writes in the job's shared state, shipping reads
DEFAULT_CARRIER = "choreo-post"
PARTNER_CARRIER = "choreo-world"
DOMESTIC_TRANSIT = timedelta(days=2)
PARTNER_TRANSIT = timedelta(days=5)
HOME_NETWORK = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT",
    "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
})

# OrderCancelled.reason codes (the progress service's statusReason uses the same strings).
PAYMENT_DECLINED = "payment-declined"
STOCK_UNAVAILABLE = "stock-unavailable"
FRAUD_REJECTED = "fraud-rejected"
EXPIRED = "expired"  # the reason a compensation carries for an expired order


class GatewayUnavailable(RetryableError):
    """The simulated card gateway failed transiently (``flaky-`` customers): retry later."""


class FraudCheckPending(RetryableError):
    """The simulated fraud bureau has no answer yet (``slow-`` customers): retry until the deadline."""


def payment_decision(customer_id: str, total_minor: int, attempt: int) -> Literal["authorize", "decline"]:
    """Authorize or decline; raises :class:`GatewayUnavailable` on a flaky customer's first two attempts.

    ``attempt`` is ``ctx.attempt`` (1 = the first delivery), so the retries of one event converge.
    """
    if customer_id.startswith("flaky-") and attempt <= FLAKY_FAILED_ATTEMPTS:
        raise GatewayUnavailable(f"card gateway timed out (attempt {attempt})")
    return "decline" if total_minor > CARD_LIMIT_MINOR else "authorize"


FraudVerdict = Literal["pass", "fail", "give-up"]


def fraud_decision(customer_id: str, now: datetime, deadline: datetime) -> FraudVerdict:
    """``pass``, ``fail``, or ``give-up`` (a slow check past the job's deadline: emit nothing).

    A ``slow-`` customer's check raises :class:`FraudCheckPending` while ``now < deadline``: the event
    goes round the retry topics until the deadline passes, then the check gives up without a verdict.
    """
    if customer_id.startswith("fraud-"):
        return "fail"
    if customer_id.startswith("slow-"):
        if now < deadline:
            raise FraudCheckPending("fraud bureau has not answered yet")
        return "give-up"
    return "pass"


def called_off_reason(event: OrderCancelled | OrderExpired) -> str:
    """Why the order was called off, as its compensations (refund, release) carry it."""
    return event.reason if isinstance(event, OrderCancelled) else EXPIRED


def fraud_score(customer_id: str) -> float:
    """A stable score for the demo: 0.97 for rejected customers, 0.05 for everyone else."""
    return 0.97 if customer_id.startswith("fraud-") else 0.05


def initial_stock(sku: str) -> int:
    """Units a SKU has when first seen: none for ``sold-out…`` SKUs, ample for every other."""
    return 0 if sku.startswith(SOLD_OUT_PREFIX) else AMPLE_STOCK


def quantities(lines: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Quantity per SKU, SKUs in first-seen order (an order may list one SKU twice)."""
    totals: dict[str, int] = {}
    for sku, quantity in lines:
        totals[sku] = totals.get(sku, 0) + quantity
    return totals


def job_deadline(placed_at: datetime, deadline: datetime | None, default_ttl_s: float) -> datetime:
    """The job's deadline: the event's own, else ``placed_at`` + the default TTL (older producers)."""
    return deadline if deadline is not None else placed_at + timedelta(seconds=default_ttl_s)


def earliest(*moments: datetime | None) -> datetime | None:
    """The earliest of the known moments, or None if none is known."""
    known = [m for m in moments if m is not None]
    return min(known) if known else None


def may_ship(now: datetime, deadline: datetime | None) -> bool:
    """A dispatch must land before the deadline with a margin, else the order expires with stock gone."""
    return deadline is None or now < deadline - SHIP_MARGIN


def to_ms(moment: datetime | None) -> int | None:
    """Epoch milliseconds (how the services' tables store time, portable on both databases)."""
    return None if moment is None else int(moment.timestamp() * 1000)


def from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def shipping_route(country: object) -> tuple[str, timedelta]:
    """(carrier, transit time) for a delivery country; anything but a 2-letter code → the default route."""
    if not isinstance(country, str) or len(country) != 2 or not country.isalpha():
        return DEFAULT_CARRIER, DOMESTIC_TRANSIT
    if country.upper() in HOME_NETWORK:
        return DEFAULT_CARRIER, DOMESTIC_TRANSIT
    return PARTNER_CARRIER, PARTNER_TRANSIT
