"""The progress resource (issue 10) checked against the topics and the services' stores, from the outside.

The saga test (tests/e2e/test_saga_e2e.py) already proves the shop itself right. These helpers then ask
``choreo progress`` about every job over HTTP only, the way a customer holding ``Location`` would, and
compare each answer with what the topics and the order service's table say happened:

- the **flow** is written down again here from docs/reference-shop.md (who consumes which event), never
  taken from ``choreo.progress.flow``: a declaration the progress service reads wrongly shows up as a
  missing or extra task instead of agreeing with itself;
- the **watcher** polls the jobs whose outcome is a compensation while it happens, to see ``compensating``;
- the **audit** returns each disagreement as one readable line naming the job and its order.

Task ids are the steps' ``request-id`` (SPEC §5), which the runtime derives with
:func:`choreo.envelope.step_request_id` from the input's ``ce_id`` and the service: that one function is
imported (it is the id's definition, and the emitted events' ``request-id`` headers cross-check it).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from choreo.envelope import step_request_id
from choreo.testing.processes import wait_until
from tests.e2e.saga_checks import SERVICES, PlacedOrder, Record, TopicRead, read_to_end, table

# docs/reference-shop.md, "Services, tables and events": event type → the services with a step for it.
# PaymentRefunded, StockReleased and CustomerNotified end their chain (no consumer); timers are not
# consumers (a fired timer is no record on a topic, so nobody can expect its step).
CONSUMERS: dict[str, tuple[str, ...]] = {
    "OrderPlaced": ("order", "payment", "fraud"),
    "PaymentAuthorized": ("inventory",),
    "PaymentDeclined": ("order",),
    "PaymentRefunded": (),
    "FraudCheckPassed": ("shipping",),  # a join part
    "FraudCheckFailed": ("order",),
    "StockReserved": ("shipping",),  # the other join part
    "StockUnavailable": ("order",),
    "StockReleased": (),
    "ShipmentDispatched": ("order", "inventory"),
    "ShipmentFailed": ("order",),
    "OrderCompleted": ("notification",),
    "OrderCancelled": ("payment", "inventory", "shipping", "notification"),
    "OrderExpired": ("payment", "inventory", "shipping", "notification"),
    "CustomerNotified": (),
}
# Emitted by order's deadline timer. Nobody can expect a timer's step, but it reports when it ran: the
# event's request-id is then the task of its source (docs/progress.md, "Expected tasks").
TIMER_EVENTS = {"OrderExpired"}
JOB_STATUSES = ("running", "compensating", "completed", "cancelled", "expired", "failed")
TASK_STATUSES = ("pending", "running", "retrying", "completed", "failed", "dead-lettered")
REASONS = ("payment-declined", "stock-unavailable", "fraud-rejected", "expired", "dead-lettered")
FINAL = ("completed", "cancelled", "expired")  # an order's terminal statuses
CODES = frozenset(JOB_STATUSES + TASK_STATUSES + REASONS)
# The texts the shop's retried steps fail with (services/rules.py), written down again: they go to the
# services' logs and dead-letter headers, never into a progress answer.
ERROR_TEXTS = ("card gateway timed out", "GatewayUnavailable", "fraud bureau has not answered",
               "FraudCheckPending", "RetryableError", "Traceback")
RETRY_LEVELS = 8  # the most retry topics a shop service has (fraud: docs/reference-shop.md)
LONG_CACHE_S = 3600  # a max-age at least this long means "settled" (docs/progress.md: 86400)
_MAX_AGE = re.compile(r"max-age=(\d+)")


# -- asking the progress service ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """One ``GET /jobs/{id}`` answer: status code, the headers that matter, the body text."""

    status_code: int
    etag: str | None
    cache_control: str | None
    link: str | None
    text: str

    @classmethod
    def of(cls, response: httpx.Response) -> Answer:
        h = response.headers
        return cls(response.status_code, h.get("etag"), h.get("cache-control"), h.get("link"), response.text)

    @property
    def body(self) -> dict[str, Any]:
        return dict(json.loads(self.text)) if self.status_code == 200 else {}

    @property
    def max_age(self) -> int | None:
        found = _MAX_AGE.search(self.cache_control or "")
        return int(found.group(1)) if found else None

    @property
    def settled(self) -> bool:
        """The service says nothing is left to happen: a long max-age (docs/progress.md)."""
        return self.status_code == 200 and (self.max_age or 0) >= LONG_CACHE_S

    def exposed(self) -> str:
        """Everything the answer shows a client: body and header values."""
        return " ".join(x or "" for x in (self.text, self.etag, self.cache_control, self.link))


def fetch_settled(progress_url: str, job_ids: Iterable[str], timeout_s: float) -> dict[str, Answer]:
    """The last answer for each job, asking again (8 at a time) until every one is settled or time is up.

    A job that is never settled keeps its last unsettled answer: the audit reports what it still waits for.
    """
    answers: dict[str, Answer] = {}
    waiting = set(job_ids)
    with httpx.Client(base_url=progress_url, timeout=5.0) as http, ThreadPoolExecutor(8) as pool:
        def ask(job_id: str) -> None:
            try:
                answers[job_id] = Answer.of(http.get(f"/jobs/{job_id}"))
            except httpx.HTTPError:
                pass  # asked again next round
            if job_id in answers and answers[job_id].settled:
                waiting.discard(job_id)

        def all_settled() -> bool:
            list(pool.map(ask, sorted(waiting)))
            return not waiting

        try:
            wait_until(all_settled, timeout_s, interval_s=0.5, message="every progress resource to settle")
        except TimeoutError:
            pass  # the audit names the jobs and what they wait for
    return answers


class CompensationWatcher:
    """Polls, every ``interval_s``, the progress resource of each order whose rule ends in a compensation
    (``slow-``: expired; ``fraud-``, over the card limit, sold out: cancelled) while its outcome is decided,
    and records the job statuses it sees in order (repeats collapsed) and every distinct answer.

    A slow order is watched from shortly before its deadline, the others from their 202; each until the
    resource shows a final status. A poll that fails (the progress service being restarted) is skipped.
    """

    WATCHED = ("slow", "fraud", "declined", "sold-out")

    def __init__(self, orders: list[PlacedOrder], *, slow_ttl_s: float, interval_s: float = 0.05,
                 give_up_s: float = 30.0) -> None:
        self.orders, self.slow_ttl_s, self.interval_s, self.give_up_s = orders, slow_ttl_s, interval_s, give_up_s
        self.seen: dict[str, list[str]] = defaultdict(list)  # job id → statuses, in the order seen
        self.answers: dict[str, dict[str, Answer]] = defaultdict(dict)  # job id → ETag → answer
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress-watcher", daemon=True)

    def start(self) -> CompensationWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _due(self, now: float, done: set[str]) -> Iterator[PlacedOrder]:
        for order in list(self.orders):
            if order.rule not in self.WATCHED or order.order_id is None or order.job_id in done:
                continue
            assert order.accepted_at is not None and order.progress_url is not None
            start = order.accepted_at + (self.slow_ttl_s - 0.5 if order.rule == "slow" else 0.0)
            if now - order.accepted_at > self.give_up_s:
                done.add(str(order.job_id))
            elif now >= start:
                yield order

    def _run(self) -> None:
        done: set[str] = set()
        with httpx.Client(timeout=2.0) as http:
            while not self._stop.is_set():
                round_started = time.monotonic()
                for order in self._due(round_started, done):
                    job_id, url = str(order.job_id), str(order.progress_url)
                    try:
                        answer = Answer.of(http.get(url))
                    except httpx.HTTPError:
                        continue
                    self.polls += 1
                    if answer.status_code != 200:
                        continue
                    status = str(answer.body.get("jobStatus"))
                    self.answers[job_id].setdefault(answer.etag or answer.text, answer)
                    if not self.seen[job_id] or self.seen[job_id][-1] != status:
                        self.seen[job_id].append(status)
                    if status in FINAL:
                        done.add(job_id)
                self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - round_started)))

    def compensating_seen(self) -> dict[str, list[str]]:
        """Jobs that showed ``compensating`` and afterwards ``cancelled`` or ``expired``: their statuses."""
        found = {}
        for job_id, statuses in self.seen.items():
            if "compensating" in statuses:
                after = statuses[statuses.index("compensating") + 1:]
                if any(s in ("cancelled", "expired") for s in after):
                    found[job_id] = statuses
        return found


# -- the audit ---------------------------------------------------------------------------------------------
def read_retries(bootstrap: str) -> dict[tuple[str, str], int]:
    """(service, input ce_id) → the highest attempt its retry topics scheduled (``retry-attempt``).

    A step that never failed has no retry record: its attempts must be 1. These are the retries that
    really happened, whatever caused them (the shop's rules, or a dependency down while a victim restarts).
    """
    topics = [f"{service}.retry.{level}" for service in SERVICES for level in range(1, RETRY_LEVELS + 1)]
    attempts: dict[tuple[str, str], int] = {}
    for topic, messages in read_to_end(bootstrap, topics).items():
        service = topic.split(".retry.", 1)[0]
        for message in messages:
            headers = {k: v.decode() for k, v in (message.headers() or []) if v is not None}
            key = (service, headers["ce_id"])
            attempts[key] = max(attempts.get(key, 1), int(headers["retry-attempt"]))
    return attempts


@dataclass(frozen=True)
class OrderRow:
    """A row of order_orders (the order service's own store)."""

    order_id: str
    job_id: str
    status: str
    reason: str | None
    deadline_ms: int | None


def load_orders(state_dir: Path) -> dict[str, OrderRow]:
    """job id → the order's row, read from ``order.sqlite3``."""
    rows = table(state_dir, "order", "SELECT order_id, job_id, status, reason, deadline FROM order_orders")
    return {r[1]: OrderRow(r[0], r[1], r[2], r[3], None if r[4] is None else int(r[4])) for r in rows}


def rfc3339(ms: int | None) -> str | None:
    """Epoch ms as SPEC §5 writes times: RFC 3339 UTC, milliseconds, ``Z``."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def string_values(value: Any) -> Iterator[str]:
    """Every string inside a decoded event value (nested records, arrays and maps included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from string_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from string_values(item)


def expected_progress(row: OrderRow) -> tuple[str, str | None]:
    """The (jobStatus, statusReason) SPEC §5 gives an order that ended as ``row`` says."""
    if row.status == "completed":
        return "completed", None
    if row.status == "expired":
        return "expired", "expired"
    return row.status, row.reason


@dataclass
class JobEvents:
    """What the topics hold for one job (records with its ``correlation-id``)."""

    job_id: str
    records: list[Record] = field(default_factory=list)

    def root(self) -> Record | None:
        roots = [r for r in self.records if "causation-id" not in r.headers]
        return min(roots, key=lambda r: r.headers.get("ce_time", "")) if roots else None

    def expected_tasks(self) -> dict[str, tuple[str, Record]]:
        """task id → (service, event): every event of the job × every service consuming its type, plus the
        timer step that emitted a timer event (its ``request-id``, by its ``ce_source``)."""
        expected = {step_request_id(r.ce_id, service): (service, r)
                    for r in self.records for service in CONSUMERS.get(r.type_name, ())}
        for r in self.records:
            if r.type_name in TIMER_EVENTS:
                expected[r.headers["request-id"]] = (r.headers["ce_source"], r)
        return expected


class ProgressAudit:
    """Every job's settled progress answer, compared with the topics and order_orders; one check per claim."""

    def __init__(self, read: TopicRead, orders: dict[str, OrderRow], answers: dict[str, Answer],
                 placed: list[PlacedOrder], progress_url: str, retries: dict[tuple[str, str], int],
                 watched: dict[str, dict[str, Answer]] | None = None) -> None:
        self.read, self.orders, self.answers, self.placed = read, orders, answers, placed
        self.retries = retries
        self.progress_url = progress_url.rstrip("/")
        self.watched = watched or {}
        self.jobs: dict[str, JobEvents] = {}
        for record in read.records:
            job_id = record.headers.get("correlation-id", record.ce_id)
            self.jobs.setdefault(job_id, JobEvents(job_id)).records.append(record)
        unknown = sorted(r.type_name for job in self.jobs.values() for r in job.records
                         if r.type_name not in CONSUMERS)
        assert not unknown, f"event types the test's flow does not know: {sorted(set(unknown))}"

    def _job(self, job_id: str) -> tuple[dict[str, Any], str]:
        """The answer's body and a label naming the job and its order, for a problem line."""
        row = self.orders.get(job_id)
        answer = self.answers.get(job_id)
        label = f"job {job_id} ({row.order_id if row else 'no order row'})"
        return (answer.body if answer else {}), label

    def check_locations(self) -> list[str]:
        """Every 202's ``Location`` is the job's progress URL: ``progress_url`` of the body, under the
        progress service dev started, naming the job the order service stored for the order."""
        problems = []
        by_order = {row.order_id: row for row in self.orders.values()}
        for order in self.placed:
            if order.order_id is None:
                continue
            want = f"{self.progress_url}/jobs/{order.job_id}"
            if not (order.location == order.progress_url == want):
                problems.append(f"{order.order_id}: Location {order.location}, progress_url {order.progress_url}, "
                                f"expected {want}")
            row = by_order.get(order.order_id)
            if row is None or row.job_id != order.job_id:
                problems.append(f"{order.order_id}: 202 job_id {order.job_id}, order_orders {row and row.job_id}")
            if order.view is not None and order.view.get("job_id") != order.job_id:
                problems.append(f"{order.order_id}: GET /orders says job {order.view.get('job_id')}, "
                                f"the 202 {order.job_id}")
        return problems

    def check_every_job_is_known(self) -> list[str]:
        """Every job of the topics and every order's job answers 200; the two sets are the same jobs."""
        problems = []
        for job_id in sorted(self.jobs.keys() | self.orders.keys()):
            answer = self.answers.get(job_id)
            if answer is None or answer.status_code != 200:
                problems.append(f"job {job_id}: progress answered {answer and answer.status_code}")
            if job_id not in self.orders:
                problems.append(f"job {job_id}: in the topics, no row in order_orders")
            elif job_id not in self.jobs:
                problems.append(f"job {job_id}: in order_orders, nothing in the topics")
        return problems

    def check_status(self) -> list[str]:
        """``jobStatus``/``statusReason`` are the order's terminal status and reason from order_orders;
        ``startedAt`` is the root's ``ce_time``, ``deadline`` the order's stored deadline, and
        ``stoppedAt`` is set."""
        problems = []
        for job_id, row in self.orders.items():
            body, label = self._job(job_id)
            if not body:
                continue
            want = expected_progress(row)
            got = (body.get("jobStatus"), body.get("statusReason"))
            if got != want:
                problems.append(f"{label}: progress says {got}, order_orders {(row.status, row.reason)} → {want}")
            root = self.jobs[job_id].root() if job_id in self.jobs else None
            if root is not None and body.get("startedAt") != root.headers.get("ce_time"):
                problems.append(f"{label}: startedAt {body.get('startedAt')}, "
                                f"root ce_time {root.headers.get('ce_time')}")
            if body.get("deadline") != rfc3339(row.deadline_ms):
                problems.append(f"{label}: deadline {body.get('deadline')}, order_orders {rfc3339(row.deadline_ms)}")
            if row.status in FINAL and body.get("stoppedAt") is None:
                problems.append(f"{label}: {row.status} but stoppedAt is null")
            if body.get("jobId") != job_id:
                problems.append(f"{label}: jobId {body.get('jobId')}")
        return problems

    def check_settled(self) -> list[str]:
        """Once the saga is quiet every job is settled: a long ``Cache-Control`` max-age and no task
        pending, running or retrying (what a settled job must not have)."""
        problems = []
        for job_id, answer in sorted(self.answers.items()):
            _, label = self._job(job_id)
            open_tasks = [f"{t['service']}:{t['taskStatus']}" for t in answer.body.get("tasks", [])
                          if t["taskStatus"] in ("pending", "running", "retrying")]
            if not answer.settled or open_tasks:
                problems.append(f"{label}: Cache-Control {answer.cache_control!r} "
                                f"({answer.body.get('jobStatus')}), open tasks {open_tasks}")
        return problems

    def check_tasks(self) -> list[str]:
        """One task per step that ran, and no other: the tasks are exactly every event of the job × every
        service consuming its type (ids = the steps' request ids), plus the deadline timer's step of an
        expired job, each ``completed`` by that service."""
        problems = []
        for job_id, job in sorted(self.jobs.items()):
            body, label = self._job(job_id)
            if not body:
                continue
            tasks = {t["taskId"]: t for t in body.get("tasks", [])}
            expected = job.expected_tasks()
            for task_id in sorted(expected.keys() - tasks.keys()):
                service, record = expected[task_id]
                problems.append(f"{label}: no task of {service} for its {record.type_name} ({task_id})")
            for task_id in sorted(tasks.keys() - expected.keys()):
                problems.append(f"{label}: unexpected task {tasks[task_id]}")
            for task_id in sorted(tasks.keys() & expected.keys()):
                service, record = expected[task_id]
                task = tasks[task_id]
                if (task["service"], task["taskStatus"]) != (service, "completed"):
                    problems.append(f"{label}: task of {service} for {record.type_name} is "
                                    f"{task['service']}/{task['taskStatus']}, expected {service}/completed")
            if len(tasks) != len(body.get("tasks", [])):
                problems.append(f"{label}: a task id listed twice")
        return problems

    def check_outputs_name_their_steps(self) -> list[str]:
        """Each emitted event's ``request-id`` is the task id of a completed task of the service that
        emitted it (``ce_source``): the tasks are the steps that really produced the job's events."""
        problems = []
        for job_id, job in sorted(self.jobs.items()):
            body, label = self._job(job_id)
            tasks = {t["taskId"]: t for t in body.get("tasks", [])}
            for record in job.records:
                if "causation-id" not in record.headers:
                    continue  # the root: the Order API's request, no step
                task = tasks.get(record.headers.get("request-id", ""))
                if task is None or (task["service"], task["taskStatus"]) != (record.headers.get("ce_source"),
                                                                            "completed"):
                    problems.append(f"{label}: {record.type_name} from {record.headers.get('ce_source')} names "
                                    f"request {record.headers.get('request-id')}, task {task}")
        return problems

    def check_attempts(self) -> list[str]:
        """Retried steps show their attempts: each task's ``attempts`` is the last attempt its service's
        retry topics scheduled for its input (1 if none); a ``flaky-`` order's payment step shows 3 (two
        gateway failures), a ``slow-`` order's fraud step ≥ 2 (it retried until the deadline)."""
        problems = []
        for job_id, job in sorted(self.jobs.items()):
            body, label = self._job(job_id)
            root = job.root()
            if not body or root is None:
                continue
            customer = str(root.value.get("customer_id", ""))
            expected = job.expected_tasks()
            for task in body.get("tasks", []):
                service, record = expected.get(task["taskId"], (task["service"], None))
                want = 1 if record is None or record.type_name in TIMER_EVENTS else \
                    self.retries.get((service, record.ce_id), 1)
                if task["attempts"] != want:
                    problems.append(f"{label}: {service} task attempts {task['attempts']}, "
                                    f"its retry topics say {want}")
            rules = {"flaky-": ("payment", lambda n: n == 3, "3"), "slow-": ("fraud", lambda n: n >= 2, "≥ 2")}
            for prefix, (service, ok, wording) in rules.items():
                if customer.startswith(prefix):
                    task_id = step_request_id(root.ce_id, service)
                    task = next((t for t in body.get("tasks", []) if t["taskId"] == task_id), None)
                    if task is None or not ok(task["attempts"]):
                        problems.append(f"{label} ({customer}): {service} task {task}, expected attempts {wording}")
        return problems

    def forbidden(self, job_id: str, body: dict[str, Any]) -> set[str]:
        """What must never appear in the job's answers: every string field value of its decoded events
        and the shop's error texts — except the job id, task ids, service names, status and reason codes
        and the resource's own field names, which legitimately do."""
        allowed = {job_id, *SERVICES, *CODES, *(t["taskId"] for t in body.get("tasks", [])),
                   *body.keys(), *(k for t in body.get("tasks", []) for k in t), *body.get("links", {})}
        values = {v for r in self.jobs.get(job_id, JobEvents(job_id)).records for v in string_values(r.value)}
        return {v for v in values if v and v not in allowed} | set(ERROR_TEXTS)

    def check_no_payload_or_error_text(self) -> list[str]:
        """No answer — settled or seen while the job ran — shows a payload value or an error text."""
        problems = []
        for job_id, answer in sorted(self.answers.items()):
            forbidden = self.forbidden(job_id, answer.body)
            _, label = self._job(job_id)
            for seen in [answer, *self.watched.get(job_id, {}).values()]:
                leaked = sorted(v for v in forbidden if v in seen.exposed())
                if leaked:
                    problems.append(f"{label}: answer ({seen.body.get('jobStatus')}) shows {leaked}")
        return problems

    def checks(self) -> dict[str, Callable[[], list[str]]]:
        return {"locations": self.check_locations, "known": self.check_every_job_is_known,
                "status": self.check_status, "settled": self.check_settled, "tasks": self.check_tasks,
                "request-ids": self.check_outputs_name_their_steps, "attempts": self.check_attempts,
                "no-leaks": self.check_no_payload_or_error_text}

    def violations(self) -> dict[str, list[str]]:
        found = {name: check() for name, check in self.checks().items()}
        return {name: problems for name, problems in found.items() if problems}


def check_http_semantics(progress_url: str, job_id: str) -> list[str]:
    """One settled job's HTTP semantics (SPEC §5): a strong ETag, ``304`` (same ETag, Cache-Control and
    Link, no body) for ``If-None-Match`` with it or its ``W/`` form, ``200`` for another tag; the long
    Cache-Control of a terminal job; the ``Link`` header and ``links``; ``404`` + ``no-store`` for an
    unknown job."""
    problems = []
    url = f"{progress_url.rstrip('/')}/jobs/{job_id}"
    with httpx.Client(timeout=5.0) as http:
        first = Answer.of(http.get(url))
        if first.status_code != 200 or not first.etag or first.etag.startswith("W/"):
            return [f"{url}: {first.status_code}, ETag {first.etag!r}"]
        if not first.settled:
            problems.append(f"{url}: terminal job, Cache-Control {first.cache_control!r}")
        want_link = f'<{url}>; rel="refresh", <{url}/state>; rel="sharedState"'
        if first.link != want_link:
            problems.append(f"{url}: Link {first.link!r}, expected {want_link!r}")
        if first.body.get("links") != {"refresh": url, "sharedState": f"{url}/state"}:
            problems.append(f"{url}: links {first.body.get('links')}")
        for tag in (first.etag, f"W/{first.etag}"):
            again = http.get(url, headers={"If-None-Match": tag})
            if again.status_code != 304 or again.content:
                problems.append(f"{url}: If-None-Match {tag} → {again.status_code} with {len(again.content)} bytes")
            seen = Answer.of(again)
            if (seen.etag, seen.cache_control, seen.link) != (first.etag, first.cache_control, first.link):
                problems.append(f"{url}: 304 headers {(seen.etag, seen.cache_control, seen.link)}, "
                                f"200 had {(first.etag, first.cache_control, first.link)}")
        other = http.get(url, headers={"If-None-Match": '"not-the-etag"'})
        if other.status_code != 200 or other.text != first.text:
            problems.append(f"{url}: another ETag → {other.status_code}")
        missing = http.get(f"{progress_url.rstrip('/')}/jobs/00000000-0000-4000-8000-000000000000")
        if missing.status_code != 404 or missing.headers.get("cache-control") != "no-store":
            problems.append(f"unknown job → {missing.status_code}, "
                            f"Cache-Control {missing.headers.get('cache-control')}")
    return problems
