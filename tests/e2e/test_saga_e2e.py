"""The reference shop end to end (issue 9, "Done when"): `choreo dev` as a real process, every service its
own process under dev's supervisor, a real broker and registry, 500 orders through the order API.

Each run places a mix aimed at every rule of SPEC §7, waits until every order is terminal and the saga has
settled, then audits it from the outside (tests/e2e/saga_checks.py): the topics read to their end and
decoded with the official registry client, and the services' SQLite state tables. The audit proves:

- every order ends as its rule says (API, exactly one terminal event id, the order table);
- no order is authorized or refunded twice; each refund undoes one authorization of the same amount;
- every release matches a reservation; completed orders ship exactly once, called-off ones never;
- per SKU, reserved − released = shipped, in the events and in inventory's tables;
- one notification per order, no deadline timer left, nothing dead-lettered.

The same holds when one service is SIGKILLed while orders flow and dev's supervisor restarts it.

Then the progress resource (issue 10, tests/e2e/progress_checks.py) must agree with all of that for every
job: status and reason as order_orders says, one completed task per step that ran (every event × every
service consuming it), the attempts of the retried steps, settled with a long Cache-Control, ETag/304, and
no payload value or error text in any answer; ``compensating`` must have been seen while a called-off job
compensated. With ``victim="progress"`` the progress service itself is SIGKILLed mid-run and must still
agree at the end.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from choreo.kafka.embedded import free_port
from choreo.testing.processes import ChoreoProcess, pid_alive, wait_until
from tests.e2e.progress_checks import (
    CompensationWatcher,
    ProgressAudit,
    check_http_semantics,
    fetch_settled,
    load_orders,
    read_retries,
)
from tests.e2e.saga_checks import (
    SERVICES,
    Placer,
    SagaAudit,
    Stores,
    WireDecoder,
    plan_orders,
    poll_until_terminal,
    read_shop,
    read_to_end,
    table,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
ORDERS = 500
RATE = 60.0  # orders per second: 500 orders in ~8 s
SLOW_TTL_S = 4.0  # slow- orders expire after this
KILL_AFTER = 200  # orders accepted before the victim is killed (mid-run: 300 still to come)


@dataclass
class Dev:
    """A running `choreo dev` on free ports, with its state directory."""

    process: ChoreoProcess
    state_dir: Path
    bootstrap: str
    registry_url: str
    order_api_url: str
    progress_url: str

    def log(self) -> str:
        assert self.process.log_path is not None
        return self.process.log_path.read_text(errors="replace") if self.process.log_path.exists() else ""

    def pids(self) -> dict[str, int]:
        path = self.state_dir / "dev" / "pids.json"
        try:
            return dict(json.loads(path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    """`choreo dev` as a child process, ready (it printed its ready line and the order API answers)."""
    ports = {name: free_port() for name in ("broker", "registry", "order", "progress")}
    state_dir = tmp_path / "state"
    process = ChoreoProcess(
        ["dev", "--broker-port", str(ports["broker"]), "--registry-port", str(ports["registry"]),
         "--order-api-port", str(ports["order"]), "--progress-port", str(ports["progress"]),
         "--metrics-base-port", "0"],
        env={"CHOREO_SCHEMAS_DIR": str(ROOT / "schemas"), "CHOREO_STATE_DIR": str(state_dir),
             "CHOREO_SERVICE_TOKEN": "", "COLUMNS": "250"},
        log_path=tmp_path / "dev.log", cwd=ROOT,
    ).start()
    running = Dev(process, state_dir, f"127.0.0.1:{ports['broker']}", f"http://127.0.0.1:{ports['registry']}",
                  f"http://127.0.0.1:{ports['order']}", f"http://127.0.0.1:{ports['progress']}")

    def ready() -> bool:
        assert process.alive(), f"choreo dev exited early:\n{running.log()[-3000:]}"
        return "choreo dev ready" in running.log()

    try:
        wait_until(ready, timeout_s=90, interval_s=0.2, message="choreo dev to print its ready line")
        process.wait_http(f"{running.order_api_url}/readyz", timeout_s=30)
        yield running
    finally:
        code = process.terminate(timeout_s=60)
        left = {name: pid for name, pid in running.pids().items() if pid_alive(pid)}
        assert not left, f"left running after dev stopped: {left}"
        assert code == 0, f"choreo dev exited {code}:\n{running.log()[-3000:]}"


def kill_and_await_restart(dev: Dev, victim: str) -> tuple[int, int]:
    """SIGKILL ``victim`` (pid from dev/pids.json); wait until dev reports and restarts it; both pids."""
    old_pid = dev.pids()[victim]
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: f"{victim} exited with code -9, restarting" in dev.log(), 15,
               message=f"dev to report {victim}'s crash")
    wait_until(lambda: dev.pids().get(victim, old_pid) != old_pid, 15, message=f"a new pid for {victim}")
    new_pid = dev.pids()[victim]
    assert pid_alive(new_pid) and not pid_alive(old_pid)
    assert f"{victim} restarted (restart 1), pid {new_pid}" in dev.log()
    return old_pid, new_pid


def settle(dev: Dev, decoder: WireDecoder, placer: Placer, timeout_s: float) -> SagaAudit:
    """The audit once the saga is quiet: nothing the checks expect is still on its way, and two reads of
    the topics ≥ 1 s apart hold the same records (no refund, release or duplicate still in flight)."""
    audits: list[SagaAudit] = []
    last: list[tuple[int, float]] = []

    def quiet() -> bool:
        read = read_shop(dev.bootstrap, decoder)
        audit = SagaAudit(read, Stores.load(dev.state_dir), placer.orders)
        audits.append(audit)
        total = sum(read.raw_counts.values())
        now = time.monotonic()
        if audit.unsettled():
            last.clear()
            return False
        if last and last[0][0] == total and now - last[0][1] >= 1.0:
            return True
        if not last or last[0][0] != total:
            last[:] = [(total, now)]
        return False

    try:
        wait_until(quiet, timeout_s, interval_s=0.5, message="the saga to settle")
    except TimeoutError:
        pass  # the audit below names what never arrived
    return audits[-1]


def dead_letters(dev: Dev) -> list[str]:
    """Every record in a service's dead-letter topic, as ``topic: reason type message``."""
    topics = [f"{name}.dlq" for name in SERVICES]
    found = []
    for topic, messages in read_to_end(dev.bootstrap, topics).items():
        for message in messages:
            headers = {k: v.decode(errors="replace") for k, v in (message.headers() or []) if v is not None}
            found.append(f"{topic}: {headers.get('dlq-reason')} {headers.get('dlq-error-type')} "
                         f"{headers.get('dlq-error-message')} (key {(message.key() or b'').decode()})")
    return found


@pytest.mark.parametrize("victim", [None, "payment", "inventory", "shipping", "order", "progress"])
def test_saga_invariants_hold_with_every_rule_and_a_killed_service(dev: Dev, victim: str | None,
                                                                   request: pytest.FixtureRequest) -> None:
    started = time.monotonic()
    planned = plan_orders(ORDERS, seed=9, slow_ttl_s=SLOW_TTL_S)
    assert {rule for rule, _ in planned} == {"plain", "declined", "sold-out", "fraud", "flaky", "slow"}
    placer = Placer(dev.order_api_url, planned, rate=RATE).start()
    watcher = CompensationWatcher(placer.orders, slow_ttl_s=SLOW_TTL_S).start()
    request.addfinalizer(watcher.stop)  # before dev stops, even if an assertion below fails

    if victim is not None:
        wait_until(lambda: placer.accepted >= KILL_AFTER, 60, interval_s=0.05, message=f"{KILL_AFTER} orders")
        kill_and_await_restart(dev, victim)
        assert placer.accepted < ORDERS, "the kill came after the last order: not mid-run"

    placer.join(timeout_s=120)
    running = poll_until_terminal(dev.order_api_url, placer.orders, timeout_s=90)
    assert not running, f"{len(running)} orders never finished, e.g. {[o.order_id for o in running[:5]]}"
    audit = settle(dev, WireDecoder(dev.registry_url), placer, timeout_s=45)

    violations = audit.violations()
    dlq = dead_letters(dev)
    if victim is not None:
        assert dev.pids()[victim] and f"{victim} restarted (restart 1)" in dev.log()
    elapsed = time.monotonic() - started
    retried = sum(1 for o in placer.orders if o.attempts > 1)
    print(f"\nvictim={victim}: {len(placer.orders)} orders placed in {placer.elapsed_s:.1f}s "
          f"({retried} needed a retry), settled and audited after {elapsed:.1f}s; "
          f"{len(audit.expected)} orders in the topics; duplicates dropped per topic: {dict(audit.read.duplicates)}")
    def trails(problems: list[str]) -> list[str]:
        order_ids = [p.split(":", 1)[0].split(" ")[0] for p in problems[:3]]
        return [f"    {audit.describe(order_id)}" for order_id in order_ids if order_id in audit.trails]

    report = violation_report(violations, then=trails)
    if dlq:
        report.append(f"dead letters: {len(dlq)}")
        report += [f"  {line}" for line in dlq[:10]]
    assert not violations and not dlq, "\n".join(report)
    assert len(audit.expected) >= ORDERS
    watcher.stop()
    # Killing the progress service blinds the watcher for seconds, and it catches up on a backlog after
    # (an expiry and its compensation then land in one batch): there, any called-off job will do.
    check_progress(dev, audit, placer, watcher, require_expiring=victim != "progress")


def violation_report(violations: dict[str, list[str]], *, prefix: str = "",
                     then: Callable[[list[str]], list[str]] = lambda _: []) -> list[str]:
    """Assertion message lines: per check, its count and first 15 violations, then ``then(violations)``."""
    report = []
    for name, problems in violations.items():
        report.append(f"{prefix}{name}: {len(problems)} violation(s)")
        report += [f"  {p}" for p in problems[:15]]
        report += then(problems)
    return report


def check_progress(dev: Dev, audit: SagaAudit, placer: Placer, watcher: CompensationWatcher, *,
                   require_expiring: bool) -> None:
    """The progress resource agrees with the audited saga for every job (tests/e2e/progress_checks.py),
    and a called-off job — an expiring one, if ``require_expiring`` — was seen ``compensating`` before
    its final status."""
    started = time.monotonic()
    orders = load_orders(dev.state_dir)
    job_ids = orders.keys() | {r.headers.get("correlation-id", r.ce_id) for r in audit.read.records}
    answers = fetch_settled(dev.progress_url, job_ids, timeout_s=30)
    settled_s = time.monotonic() - started
    progress = ProgressAudit(audit.read, orders, answers, placer.orders, dev.progress_url,
                             read_retries(dev.bootstrap), watcher.answers)
    problems = progress.violations()
    completed = next(job_id for job_id, row in orders.items() if row.status == "completed")
    http = check_http_semantics(dev.progress_url, completed)
    compensating = watcher.compensating_seen()
    expiring = {job_id: seen for job_id, seen in compensating.items() if seen[-1] == "expired"}
    watched = sum(len(seen) for seen in watcher.answers.values())
    print(f"progress: {len(answers)} jobs settled after {settled_s:.1f}s, checked in "
          f"{time.monotonic() - started:.1f}s ({len(answers) + watched} distinct answers leak-checked); "
          f"watcher: {watcher.polls} polls of {len(watcher.seen)} jobs, "
          f"seen compensating: {len(expiring)} expiring, {len(compensating) - len(expiring)} cancelled, "
          f"e.g. {list(expiring.values())[:2]}")
    report = violation_report(problems, prefix="progress ")
    report += [f"progress http: {line}" for line in http]
    assert not problems and not http, "\n".join(report)
    assert expiring if require_expiring else compensating, (
        f"no {'expiring' if require_expiring else 'called-off'} job was seen compensating before its final "
        f"status; statuses seen per watched job: {dict(list(watcher.seen.items())[:10])}")


def test_an_order_service_crash_before_its_publish_leaves_no_order_running_forever(dev: Dev) -> None:
    """The order service SIGKILLed while POSTs wait to publish: no stored order may stay ``running``.

    Every row of order_orders must belong to a published order (an OrderPlaced, so payment, fraud and the
    deadline timer take it up) and finish by its deadline. To make "stored, not yet published" certain
    rather than a race, the broker is paused (SIGSTOP) while ten orders arrive: the API answers none of
    them, then the order service is killed and the broker resumed.
    """
    body = {"customer_id": "cust-crash", "currency": "EUR", "max_ttl_s": 2,
            "lines": [{"sku": "tea-sencha", "quantity": 1, "unit_price_minor": 1_250}]}

    def rows() -> dict[str, str]:
        """order_id → status of every row of order_orders."""
        try:
            return dict(table(dev.state_dir, "order", "SELECT order_id, status FROM order_orders"))
        except sqlite3.Error:  # the file or table may not be there yet
            return {}

    def post() -> int | str:
        try:
            return httpx.post(f"{dev.order_api_url}/orders", json=body, timeout=30).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__

    assert post() == 202  # the API's store and publisher are open
    broker = dev.pids()["broker"]
    os.kill(broker, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(10) as pool:
            answers = [pool.submit(post) for _ in range(10)]
            try:  # a row is stored before its publish (now hanging); an API that publishes first stores none
                wait_until(lambda: len(rows()) >= 11, 5, interval_s=0.02, message="ten more orders stored")
            except TimeoutError:
                pass
            kill_and_await_restart(dev, "order")
            os.kill(broker, signal.SIGCONT)
            assert all(answer.result() != 202 for answer in answers), "answered while the broker was paused"
    finally:
        os.kill(broker, signal.SIGCONT)
    dev.process.wait_http(f"{dev.order_api_url}/readyz", timeout_s=30)
    try:
        wait_until(lambda: all(status != "running" for status in rows().values()), 12, interval_s=0.2,
                   message="every stored order to finish (2 s deadlines)")
    except TimeoutError:
        pass  # reported below, with whether each stuck order was ever published
    audit = SagaAudit(read_shop(dev.bootstrap, WireDecoder(dev.registry_url)), Stores.load(dev.state_dir), [])
    stuck = {order_id: "published" if order_id in audit.expected else "never published"
             for order_id, (status, _) in audit.stores.orders.items() if status == "running"}
    assert not stuck, (f"{len(stuck)} of {len(audit.stores.orders)} stored orders still running long after "
                       f"their 2 s deadline: {stuck}")
