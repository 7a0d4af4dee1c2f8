"""The orders `choreo demo` places: a realistic mix aimed at each of the shop's outcomes (SPEC §7).

The rules are written down here from the SPEC, not imported from ``services.rules``: the demo checks the
shop from the outside, so a rule the shop gets wrong shows up as a mismatch instead of agreeing with itself.

Mix: every block of 20 orders holds 15 ordinary ones and one of each special case, shuffled with a
seeded RNG (the same seed places the same orders). A partial last block keeps one of each kind before
extra ordinary ones, so any run of 6 or more orders meets every outcome.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

BLOCK = 20
CARD_LIMIT_MINOR = 500_000  # SPEC §7: a total above this is declined
CATALOGUE = (("tea-sencha", 1_250), ("mug-blue", 990), ("kettle-steel", 4_990), ("beans-1kg", 2_450),
             ("filter-paper", 350), ("grinder-hand", 8_900), ("cup-espresso", 690), ("scale-digital", 3_900))


@dataclass(frozen=True)
class Rule:
    """One of the shop's rules: how the demo triggers it and how the order must end."""

    name: str
    status: str  # completed | cancelled | expired
    reason: str | None  # the order's `reason` once terminal (SPEC §5), None for completed
    per_block: int
    description: str

    @property
    def expected(self) -> str:
        return outcome_label(self.status, self.reason)


RULES: tuple[Rule, ...] = (
    Rule("plain", "completed", None, 15, "an ordinary order"),
    Rule("declined", "cancelled", "payment-declined", 1, "total over 500000 minor units"),
    Rule("sold-out", "cancelled", "stock-unavailable", 1, "a line with a sold-out-… SKU"),
    Rule("fraud", "cancelled", "fraud-rejected", 1, "a fraud-… customer"),
    Rule("flaky", "completed", None, 1, "a flaky-… customer: payment retried twice, then completed"),
    Rule("slow", "expired", "expired", 1, "a slow-… customer with a short max_ttl_s: expires"),
)
RULES_BY_NAME = {rule.name: rule for rule in RULES}
assert sum(rule.per_block for rule in RULES) == BLOCK


def outcome_label(status: str, reason: str | None) -> str:
    """``completed``, ``cancelled/payment-declined``, ``expired``… — one string per outcome."""
    if status == "cancelled":
        return f"cancelled/{reason or 'unknown'}"
    return status


@dataclass(frozen=True)
class PlannedOrder:
    """Order number ``index`` of the run, the rule it aims at, and the POST /orders body."""

    index: int
    rule: Rule
    body: dict[str, Any]


def _lines(rng: random.Random, count: int) -> list[dict[str, Any]]:
    picked = rng.sample(CATALOGUE, count)
    return [{"sku": sku, "quantity": rng.randint(1, 3), "unit_price_minor": price} for sku, price in picked]


def order_body(rule: Rule, rng: random.Random, slow_ttl_s: float) -> dict[str, Any]:
    """A POST /orders body that triggers ``rule`` and no other (totals stay under the card limit)."""
    number = rng.randint(1, 999)
    customer = {"fraud": f"fraud-{number}", "flaky": f"flaky-{number}", "slow": f"slow-{number}"}.get(
        rule.name, f"cust-{number}")
    lines = _lines(rng, rng.randint(1, 3))
    if rule.name == "declined":
        lines = [{"sku": "piano-grand", "quantity": 1, "unit_price_minor": CARD_LIMIT_MINOR + 250_000}]
    elif rule.name == "sold-out":
        lines.append({"sku": "sold-out-lamp", "quantity": 1, "unit_price_minor": 2_900})
    body: dict[str, Any] = {"customer_id": customer, "lines": lines, "currency": "EUR"}
    if rule.name == "slow":
        body["max_ttl_s"] = slow_ttl_s
    return body


def _block(rng: random.Random, size: int) -> list[Rule]:
    """``size`` (≤ BLOCK) rules: one of each kind first, then ordinary ones, shuffled."""
    kinds = list(RULES)
    rng.shuffle(kinds)
    rest = [rule for rule in RULES for _ in range(rule.per_block - 1)]
    chosen = (kinds + rest)[:size]
    rng.shuffle(chosen)
    return chosen


def plan_orders(count: int, seed: int = 1, slow_ttl_s: float = 5.0) -> list[PlannedOrder]:
    """``count`` orders in placing order; deterministic for a given seed."""
    rng = random.Random(seed)
    rules: list[Rule] = []
    while len(rules) < count:
        rules += _block(rng, min(BLOCK, count - len(rules)))
    return [PlannedOrder(i, rule, order_body(rule, rng, slow_ttl_s)) for i, rule in enumerate(rules)]
