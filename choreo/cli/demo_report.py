"""What became of the demo's orders: outcome per order, counts per rule, mismatches, latency percentiles.

Pure logic (no I/O), so the table the demo prints is unit-tested on its own.

Latency is end to end, from the order being accepted to its job finishing. It is taken from the order's
own ``placed_at`` → ``finished_at`` (server clock, millisecond timestamps) when both are there, else from
the client's clock: the 202 arriving → the first poll that saw the terminal status (late by up to one
poll interval). ``source`` says which were used.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from choreo.cli.demo_plan import RULES, PlannedOrder, outcome_label

TERMINAL = frozenset({"completed", "cancelled", "expired"})
FAILED, RUNNING = "failed", "running"


@dataclass
class OrderResult:
    """One planned order as the demo saw it: placing it, then its last polled state."""

    planned: PlannedOrder
    order_id: str | None = None
    error: str | None = None  # why placing it failed (HTTP status or transport error)
    accepted_at: float | None = None  # client wall clock (time.time()) when the 202 arrived
    status: str | None = None
    reason: str | None = None
    placed_at: datetime | None = None  # server: accepted
    finished_at: datetime | None = None  # server: the job's terminal event
    seen_terminal_at: float | None = None  # client wall clock of the first poll that saw it terminal

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def outcome(self) -> str:
        """``failed`` (never placed), ``running`` (not finished yet), or the outcome label."""
        if self.order_id is None:
            return FAILED
        if not self.terminal:
            return RUNNING
        assert self.status is not None
        return outcome_label(self.status, self.reason)

    @property
    def mismatched(self) -> bool:
        """Finished, but not as its rule says (running and failed orders are counted apart)."""
        return self.terminal and self.outcome != self.planned.rule.expected

    def latency(self) -> tuple[float, str] | None:
        """(seconds, "server" | "client") from accepted to finished, or None while unfinished."""
        if not self.terminal:
            return None
        if self.placed_at is not None and self.finished_at is not None:
            return max(0.0, (self.finished_at - self.placed_at).total_seconds()), "server"
        if self.accepted_at is not None and self.seen_terminal_at is not None:
            return max(0.0, self.seen_terminal_at - self.accepted_at), "client"
        return None


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0–100] of already sorted, non-empty values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(results: Iterable[OrderResult]) -> dict[str, Any] | None:
    """count, p50/p90/p99/max in seconds and the clock used; None when no order finished."""
    measured = [m for r in results if (m := r.latency()) is not None]
    if not measured:
        return None
    values = sorted(seconds for seconds, _ in measured)
    sources = {source for _, source in measured}
    return {"source": sources.pop() if len(sources) == 1 else "mixed", "count": len(values),
            "p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
            "max": values[-1]}


def summarize(results: Sequence[OrderResult], elapsed_s: float) -> dict[str, Any]:
    """The machine-readable summary (`choreo demo --json`); ``ok`` is all placed, finished, as expected."""
    outcomes = Counter(r.outcome for r in results)
    cancelled = {label.split("/", 1)[1]: n for label, n in sorted(outcomes.items()) if label.startswith("cancelled/")}
    rules = []
    for rule in RULES:
        mine = [r for r in results if r.planned.rule is rule]
        if not mine:
            continue
        latency = latency_summary(mine)
        rules.append({
            "rule": rule.name, "description": rule.description, "expected": rule.expected, "orders": len(mine),
            "as_expected": sum(1 for r in mine if r.terminal and not r.mismatched),
            "mismatched": sum(1 for r in mine if r.mismatched),
            "running": sum(1 for r in mine if r.outcome == RUNNING),
            "failed": sum(1 for r in mine if r.outcome == FAILED),
            "actual": dict(sorted(Counter(r.outcome for r in mine).items())),
            "p50_s": latency["p50"] if latency else None,
        })
    mismatches = [{"order_id": r.order_id, "rule": r.planned.rule.name, "expected": r.planned.rule.expected,
                   "actual": r.outcome} for r in results if r.mismatched]
    errors = Counter(r.error for r in results if r.error)
    finished = sum(1 for r in results if r.terminal)
    return {
        "orders": len(results),
        "placed": sum(1 for r in results if r.order_id is not None),
        "finished": finished,
        "outcomes": {"completed": outcomes.get("completed", 0), "cancelled": cancelled,
                     "expired": outcomes.get("expired", 0), "failed": outcomes.get(FAILED, 0),
                     "running": outcomes.get(RUNNING, 0)},
        "rules": rules,
        "mismatches": mismatches,
        "errors": dict(errors.most_common(5)),
        "latency_s": latency_summary(results),
        "elapsed_s": round(elapsed_s, 3),
        "ok": finished == len(results) and not mismatches,
    }
