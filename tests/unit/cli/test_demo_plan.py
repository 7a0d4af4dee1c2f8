"""The demo's order mix: every rule present, each body triggering exactly its own rule, deterministic."""

from __future__ import annotations

from collections import Counter

import pytest

from choreo.cli.demo_plan import BLOCK, CARD_LIMIT_MINOR, RULES, RULES_BY_NAME, outcome_label, plan_orders


def _total(body: dict) -> int:
    return sum(line["quantity"] * line["unit_price_minor"] for line in body["lines"])


def _triggered(body: dict) -> set[str]:
    """Which SPEC §7 rules a body triggers, read straight from the SPEC's table."""
    rules = set()
    if _total(body) > CARD_LIMIT_MINOR:
        rules.add("declined")
    if any(line["sku"].startswith("sold-out") for line in body["lines"]):
        rules.add("sold-out")
    for prefix in ("fraud", "flaky", "slow"):
        if body["customer_id"].startswith(f"{prefix}-"):
            rules.add(prefix)
    return rules or {"plain"}


def test_a_block_of_twenty_holds_fifteen_plain_and_one_of_each_special_case() -> None:
    counts = Counter(order.rule.name for order in plan_orders(BLOCK * 5))
    assert counts == {"plain": 75, "declined": 5, "sold-out": 5, "fraud": 5, "flaky": 5, "slow": 5}


@pytest.mark.parametrize("count", [6, 7, 13, 26])
def test_any_run_of_six_or_more_meets_every_rule(count: int) -> None:
    orders = plan_orders(count)
    assert len(orders) == count
    assert {order.rule.name for order in orders} == set(RULES_BY_NAME)


def test_each_body_triggers_exactly_its_own_rule_and_is_a_valid_order() -> None:
    for order in plan_orders(200, seed=7):
        body = order.body
        assert _triggered(body) == {order.rule.name}, body
        assert body["currency"] == "EUR" and body["lines"]
        assert all(line["quantity"] >= 1 and line["unit_price_minor"] >= 0 for line in body["lines"])
        assert ("max_ttl_s" in body) == (order.rule.name == "slow")


def test_slow_orders_carry_the_short_deadline() -> None:
    slow = [o for o in plan_orders(40, slow_ttl_s=3.5) if o.rule.name == "slow"]
    assert slow and all(o.body["max_ttl_s"] == 3.5 for o in slow)


def test_the_same_seed_places_the_same_orders_and_another_seed_does_not() -> None:
    assert [o.body for o in plan_orders(50, seed=3)] == [o.body for o in plan_orders(50, seed=3)]
    assert [o.body for o in plan_orders(50, seed=3)] != [o.body for o in plan_orders(50, seed=4)]
    assert [o.index for o in plan_orders(50)] == list(range(50))


def test_expected_outcomes_follow_the_spec() -> None:
    assert {rule.name: rule.expected for rule in RULES} == {
        "plain": "completed", "declined": "cancelled/payment-declined", "sold-out": "cancelled/stock-unavailable",
        "fraud": "cancelled/fraud-rejected", "flaky": "completed", "slow": "expired"}
    assert outcome_label("cancelled", None) == "cancelled/unknown"
