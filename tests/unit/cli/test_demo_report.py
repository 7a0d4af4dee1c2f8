"""The demo's report as pure logic: outcome per order, mismatches, counts per rule, latency percentiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from choreo.cli.demo_plan import RULES_BY_NAME, PlannedOrder
from choreo.cli.demo_report import OrderResult, latency_summary, percentile, summarize

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def result(rule: str, status: str | None = None, reason: str | None = None, *, seconds: float | None = None,
           placed: bool = True, error: str | None = None) -> OrderResult:
    planned = PlannedOrder(0, RULES_BY_NAME[rule], {})
    r = OrderResult(planned, order_id="ord-1" if placed else None, error=error, status=status, reason=reason)
    if seconds is not None:
        r.placed_at, r.finished_at = T0, T0 + timedelta(seconds=seconds)
    return r


def test_outcomes_of_failed_running_and_terminal_orders() -> None:
    assert result("plain", placed=False, error="HTTP 503").outcome == "failed"
    assert result("plain").outcome == "running"
    assert result("plain", "running").outcome == "running"
    assert result("declined", "cancelled", "payment-declined").outcome == "cancelled/payment-declined"
    assert result("slow", "expired", "expired").outcome == "expired"


def test_only_a_finished_order_with_another_outcome_is_a_mismatch() -> None:
    assert not result("declined", "cancelled", "payment-declined").mismatched
    assert result("declined", "completed").mismatched
    assert result("fraud", "cancelled", "payment-declined").mismatched  # right status, wrong reason
    assert not result("plain", "running").mismatched
    assert not result("plain", placed=False).mismatched


@pytest.mark.parametrize(("q", "expected"), [(50, 5), (90, 9), (99, 10), (100, 10), (1, 1)])
def test_nearest_rank_percentiles(q: float, expected: float) -> None:
    assert percentile([float(v) for v in range(1, 11)], q) == expected


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latency_prefers_server_timestamps_and_falls_back_to_the_client_clock() -> None:
    server = result("plain", "completed", seconds=0.25)
    server.accepted_at, server.seen_terminal_at = 100.0, 109.0  # ignored: the server's times win
    assert server.latency() == (0.25, "server")
    client = result("plain", "completed")
    client.accepted_at, client.seen_terminal_at = 100.0, 100.5
    assert client.latency() == (0.5, "client")
    assert result("plain", "running", seconds=1.0).latency() is None
    assert latency_summary([server, client])["source"] == "mixed"
    assert latency_summary([result("plain", "running")]) is None


def test_summary_counts_per_outcome_and_per_rule() -> None:
    results = [result("plain", "completed", seconds=s) for s in (0.1, 0.2, 0.3, 0.4)]
    results += [result("declined", "cancelled", "payment-declined", seconds=0.2),
                result("declined", "completed", seconds=0.9),                   # a mismatch
                result("slow", "expired", "expired", seconds=5.1),
                result("fraud", "running"),                                     # never finished
                result("flaky", placed=False, error="HTTP 503")]               # never placed
    summary = summarize(results, elapsed_s=12.3456)
    assert summary["orders"] == 9 and summary["placed"] == 8 and summary["finished"] == 7
    assert summary["outcomes"] == {"completed": 5, "cancelled": {"payment-declined": 1}, "expired": 1,
                                   "failed": 1, "running": 1}
    rules = {rule["rule"]: rule for rule in summary["rules"]}
    assert list(rules) == ["plain", "declined", "fraud", "flaky", "slow"]  # RULES order, absent ones left out
    assert rules["declined"] == {
        "rule": "declined", "description": RULES_BY_NAME["declined"].description,
        "expected": "cancelled/payment-declined", "orders": 2, "as_expected": 1, "mismatched": 1, "running": 0,
        "failed": 0, "actual": {"cancelled/payment-declined": 1, "completed": 1}, "p50_s": 0.2}
    assert rules["fraud"]["running"] == 1 and rules["flaky"]["failed"] == 1
    assert summary["mismatches"] == [{"order_id": "ord-1", "rule": "declined",
                                      "expected": "cancelled/payment-declined", "actual": "completed"}]
    assert summary["errors"] == {"HTTP 503": 1}
    latency = summary["latency_s"]
    assert latency["source"] == "server" and latency["count"] == 7
    assert (latency["p50"], latency["p90"], latency["max"]) == (0.3, 5.1, 5.1)
    assert summary["elapsed_s"] == 12.346
    assert summary["ok"] is False


def test_summary_is_ok_when_every_order_finished_as_expected() -> None:
    results = [result("plain", "completed", seconds=0.1), result("slow", "expired", "expired", seconds=5)]
    assert summarize(results, 1.0)["ok"] is True
