"""End-to-end latency of the reference shop's saga, from outside, as a user runs it.

What is measured, per order: ``placed_at`` → ``finished_at`` from ``GET /orders/{id}``, both stamped by the
order service (the order API accepting the order; the order service closing the job on ShipmentDispatched),
so one clock and no polling delay. Only plain orders are placed (customer ``cust-…``, ordinary SKUs, totals
under the card limit: choreo.cli.demo_plan's "plain" rule), so every job runs the whole happy path:
OrderPlaced → payment and fraud in parallel → inventory → shipping (a join of StockReserved and
FraudCheckPassed) → OrderCompleted. A plain order ending any other way, or still running when the step ends,
counts against ``completed``.

How: ``choreo dev`` runs as a child process on free ports with a temporary ``CHOREO_STATE_DIR`` (and no
``CHOREO_*`` variable of the caller's shell; the directory is removed once dev has stopped cleanly). Once it
prints ready, a short warm-up is placed and discarded, then one step per rate: ``orders_at_50 * rate / 50``
orders (every step lasts as long), placed and polled by the demo's own client (choreo.cli.demo_client: one
pooled httpx client, POST number i due at ``start + i / rate``, at most 32 requests in flight), until every
order is terminal. ``choreo demo`` itself cannot be the load: it always places its fixed mix, a quarter of it
meant to be cancelled, retried or to expire, and its ``--json`` latency covers them all. The achieved rate is
the server's: orders accepted per second between the first and the last ``placed_at``; below the target, the
order API (or the box) could not take orders that fast, and the latency shown starts at acceptance.

Rates: 50, 100, 200, 300, 400, 500, 600, 800, 1000 orders/s (50 and 200 always), up to the first step that
fails: p99 ≥ 1 s, an achieved rate under 95% of the target, or not every order completed. Then up to three
steps between the last good rate (or 0) and the failing one, halving the gap down to 25 orders/s. The result is the
highest good rate below the lowest failing one. Everything (dev's processes, the broker, this client) shares
the machine's cores, so the 1-minute load average is kept per step.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from choreo.cli.demo_client import DemoClient
from choreo.cli.demo_plan import RULES_BY_NAME, PlannedOrder, order_body
from choreo.cli.demo_report import FAILED, RUNNING, OrderResult, percentile
from choreo.kafka.embedded import free_port
from choreo.testing.processes import ChoreoProcess, pid_alive, wait_until

ROOT = Path(__file__).resolve().parent.parent
BASE_RATE = 50  # --saga-orders is the size of the step at this rate
LADDER = (50, 100, 200, 300, 400, 500, 600, 800, 1000)
ALWAYS = (50, 200)
RESOLUTION = 25  # the search halves the gap between the last good and the first failing rate down to this
P99_LIMIT_S = 1.0
SHORTFALL = 0.95  # achieved below this share of the target: the shop (or the client) could not keep up
WARM_UP = (50, 25)  # orders, per second: first connections, first fetches, first SQLite pages; not counted
DRAIN_TIMEOUT_S = 30.0  # after a step's last order, how long its jobs may take to finish
POLL_INTERVAL_S = 0.5  # latency comes from server timestamps: polling more often would only add load
SETTLE_S = 1.0  # between steps
BUDGET_S = 200.0  # no new step starts after this (dev start included); the whole bench stays under ~4 min
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 45.0  # dev gives each service 20 s to stop


@dataclass
class SagaStep:
    target: int  # orders/s asked for
    orders: int  # orders placed (attempted)
    completed: int  # plain orders that ended completed
    achieved: float  # orders/s accepted, from the server's placed_at
    latencies_s: list[float] = field(default_factory=list, repr=False)  # completed orders, sorted
    load: float = 0.0  # 1-minute load average as the step ended: the box is shared, this says how much
    others: dict[str, int] = field(default_factory=dict)  # what became of the rest: outcome or error → count

    def quantile(self, q: float) -> float | None:
        return percentile(self.latencies_s, q) if self.latencies_s else None

    @property
    def p99_s(self) -> float | None:
        return self.quantile(99)

    @property
    def good(self) -> bool:
        p99 = self.p99_s
        return (self.completed == self.orders and p99 is not None and p99 < P99_LIMIT_S
                and self.achieved >= SHORTFALL * self.target)

    @property
    def running(self) -> int:
        return self.others.get(RUNNING, 0)

    def why_not(self) -> str:
        if self.completed < self.orders:
            detail = ", ".join(f"{n} {what}" for what, n in sorted(self.others.items()))
            return f"{self.orders - self.completed} of {self.orders} orders not completed ({detail})"
        if self.achieved < SHORTFALL * self.target:
            return f"achieved {self.achieved:.0f}/s of {self.target}/s"
        return f"p99 {self.p99_s:.2f} s"


@dataclass
class SagaResult:
    steps: list[SagaStep]
    best: int | None  # the highest good rate below the lowest failing one
    first_bad: SagaStep | None  # the lowest failing step
    dev_ready_s: float
    dev_exit: int | None
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    elapsed_s: float
    stopped_by_budget: bool


def step_result(target: int, results: list[OrderResult]) -> SagaStep:
    """Figures of one step's orders (pure: unit-testable apart from the shop)."""
    done = [r for r in results if r.status == "completed"]
    others = Counter(f"{FAILED}: {r.error}" if r.error else r.outcome for r in results if r.status != "completed")
    latencies = sorted(m[0] for r in done if (m := r.latency()) is not None and m[1] == "server")
    placed = sorted(r.placed_at.timestamp() for r in results if r.placed_at is not None)
    span = placed[-1] - placed[0] if len(placed) > 1 else 0.0
    achieved = (len(placed) - 1) / span if span > 0 else 0.0
    return SagaStep(target, len(results), len(done), achieved, latencies, others=dict(others))


def plain_orders(count: int, rng: random.Random) -> list[PlannedOrder]:
    """``count`` orders of the demo's "plain" rule: each one runs the whole happy path."""
    plain = RULES_BY_NAME["plain"]
    return [PlannedOrder(i, plain, order_body(plain, rng, slow_ttl_s=5.0)) for i in range(count)]


def next_rate(steps: list[SagaStep]) -> int | None:
    """The rate of the next step, or None: up the ladder to the first failure (50 and 200 always), then
    halve the gap between the last good rate and the failing one down to RESOLUTION."""
    done = {s.target for s in steps}
    bad = next((s for s in steps if not s.good), None)
    if bad is None:
        return next((r for r in LADDER if r not in done), None)
    if bad.running or steps[-1].running:
        return None  # jobs left running would be the next step's backlog: no figure after it is clean
    pending = [r for r in ALWAYS if r not in done]
    if pending:
        return pending[0]
    good = [s.target for s in steps if s.good and s.target < bad.target]
    low = max(good, default=0)
    high = min(s.target for s in steps if not s.good and s.target > low)
    middle = (low + high) // 2 // RESOLUTION * RESOLUTION
    return middle if middle and high - low > RESOLUTION and middle not in done else None  # 50 failing: try 25


def best_rate(steps: list[SagaStep]) -> tuple[int | None, SagaStep | None]:
    """The highest good rate below the lowest failing one, and that failing step."""
    bad = min((s for s in steps if not s.good), key=lambda s: s.target, default=None)
    limit = bad.target if bad else float("inf")
    return max((s.target for s in steps if s.good and s.target < limit), default=None), bad


class DevShop:
    """``choreo dev`` as a child process on free ports, with a temporary state directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = {name: free_port() for name in ("broker", "registry", "order", "progress")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHOREO_")}
        env.update(CHOREO_STATE_DIR=str(workdir / ".choreo"), CHOREO_SCHEMAS_DIR=str(ROOT / "schemas"))
        self.process = ChoreoProcess(
            ["dev", "--broker-port", str(self.ports["broker"]), "--registry-port", str(self.ports["registry"]),
             "--order-api-port", str(self.ports["order"]), "--progress-port", str(self.ports["progress"]),
             "--metrics-base-port", "0"], log_path=workdir / "dev.log", cwd=ROOT)
        self.process.env = env  # exactly this: no CHOREO_* setting of the caller's shell leaks in
        self.ready_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['order']}"

    def log(self) -> str:
        path = self.workdir / "dev.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        self.process.start()

        def ready() -> bool:
            if not self.process.alive():
                raise RuntimeError(f"choreo dev exited with {self.process.returncode()}:\n{self.log()[-3000:]}")
            return "choreo dev ready" in self.log()

        try:
            wait_until(ready, READY_TIMEOUT_S, interval_s=0.2, message="choreo dev to print ready")
        except TimeoutError:
            raise TimeoutError(f"choreo dev not ready in {READY_TIMEOUT_S:.0f} s:\n{self.log()[-3000:]}") from None
        found = re.search(r"choreo dev ready in ([\d.]+)s", self.log())
        self.ready_s = float(found.group(1)) if found else 0.0

    def stop(self) -> int | None:
        """SIGTERM (dev stops services, registry, broker in order); anything left behind is killed by pid."""
        pids_file = self.workdir / ".choreo" / "dev" / "pids.json"
        children = json.loads(pids_file.read_text()) if pids_file.exists() else {}
        code = self.process.terminate(STOP_TIMEOUT_S)
        if code != 0:  # dev had to be killed (or failed): its children, in their own sessions, may run on
            for name, pid in children.items():
                if name != "dev" and pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
        return code


def saga_latency(orders_at_50: int, report: Callable[[SagaStep], None] = lambda _: None,
                 seed: int = 1) -> SagaResult:
    """Run the steps against a fresh ``choreo dev``; ``report`` is called after each step."""
    started, load_before = time.monotonic(), os.getloadavg()
    rng = random.Random(seed)
    workdir = Path(tempfile.mkdtemp(prefix="choreo-bench-saga-"))
    shop = DevShop(workdir)
    steps: list[SagaStep] = []
    stopped_by_budget = False
    try:
        shop.start()
        DemoClient(shop.url, rate=WARM_UP[1], timeout_s=DRAIN_TIMEOUT_S,
                   poll_interval_s=POLL_INTERVAL_S).run(plain_orders(WARM_UP[0], rng))
        while (rate := next_rate(steps)) is not None:
            if time.monotonic() - started > BUDGET_S:
                stopped_by_budget = True
                break
            time.sleep(SETTLE_S)
            count = max(1, orders_at_50 * rate // BASE_RATE)
            client = DemoClient(shop.url, rate=rate, timeout_s=DRAIN_TIMEOUT_S, poll_interval_s=POLL_INTERVAL_S)
            steps.append(step_result(rate, client.run(plain_orders(count, rng))))
            steps[-1].load = os.getloadavg()[0]
            report(steps[-1])
    finally:
        dev_exit = shop.stop()
    if dev_exit == 0:
        shutil.rmtree(workdir, ignore_errors=True)  # ~50 MB of stores and logs; kept when dev did not stop cleanly
    best, first_bad = best_rate(steps)
    return SagaResult(steps, best, first_bad, shop.ready_s, dev_exit, load_before, os.getloadavg(),
                      time.monotonic() - started, stopped_by_budget)
