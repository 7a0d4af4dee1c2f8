"""A job's progress resource, derived from facts: pure functions, no I/O.

Facts are what the topics said, kept as they came: a domain event of the job (:class:`EventFact`), one
task record (:class:`TaskFact`), one dead letter's position (:class:`DeadLetterFact`). The resource is a
function of the *set* of facts — never of their arrival order or count — so records that come twice, or
a task record before its input's domain event, or a domain event before the job's root, give the same
answer once the same facts are in. Where an order is needed it comes from the facts themselves (an event's
``ce_time``, a record's ``stopped``), with the ids as tie-breakers.

Rules (docs/progress.md explains them with examples):

- ``startedAt``/``deadline``: the job's root event (no ``causation-id``; the earliest if several);
  ``maxTTL`` = deadline − start, in seconds.
- Expected tasks: every event E of the job and every service S that consumes E's type gives the task
  ``step_request_id(E.ce_id, S)``, ``pending`` until S reports it.
- A task's status: ``completed`` once any record says so (a replay that let a dead letter finish);
  otherwise the latest record's status (by ``stopped``, then attempt). ``attempts`` = highest attempt seen.
- The first terminal event (by ``ce_time``, then ``ce_id``) sets the outcome. ``cancelled``/``expired``
  show ``compensating`` while a task started by the terminal event (its input is that event or an event
  caused by it, transitively) is unfinished, and ``failed``/``dead-lettered`` while such a task is
  dead-lettered: compensation cannot end without a human. A ``completed`` job stays ``completed`` even if
  a later side step (a notification) is dead-lettered: the task shows it, the alert fires.
- Without a terminal event: ``failed``/``dead-lettered`` while any task is dead-lettered, else ``running``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from choreo.envelope import format_time, step_request_id

JOB_STATUSES = ("running", "compensating", "completed", "cancelled", "expired", "failed")
TASK_STATUSES = ("pending", "running", "retrying", "completed", "failed", "dead-lettered")
UNFINISHED = frozenset({"pending", "running", "retrying"})
_COMPENSATED = frozenset({"cancelled", "expired"})
_RANK = {"retrying": 0, "dead-lettered": 1, "completed": 2}  # same stop time: the further outcome wins
_REASON = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
_NEVER = 2**62  # sorts unknown times last


@dataclass(frozen=True)
class EventFact:
    """A domain event of a job, as its record said (``end_*`` from its class's ``ends_job`` at intake)."""

    event_id: str
    job_id: str
    event_type: str
    causation_id: str | None
    time_ms: int | None
    deadline_ms: int | None = None
    end_status: str | None = None
    end_reason: str | None = None


@dataclass(frozen=True)
class TaskFact:
    """One task record of ``choreo.tasks`` (see :mod:`choreo.tasks`)."""

    task_id: str
    job_id: str
    service: str
    status: str
    attempt: int
    input_id: str
    input_type: str
    started_ms: int
    stopped_ms: int


@dataclass(frozen=True)
class DeadLetterFact:
    """Where a dead letter of the job sits: ``<service>.dlq`` partition and offset, and its input id."""

    topic: str
    partition: int
    offset: int
    job_id: str
    service: str
    event_id: str


@dataclass(frozen=True)
class TaskView:
    task_id: str
    service: str
    status: str
    started_ms: int | None
    stopped_ms: int | None
    attempts: int
    input_id: str
    sort_ms: int


@dataclass(frozen=True)
class JobView:
    """The derived resource of one job (plus what the service needs beyond it: end status, settled)."""

    job_id: str
    status: str
    reason: str | None
    started_ms: int | None
    stopped_ms: int | None
    deadline_ms: int | None
    tasks: tuple[TaskView, ...]
    end_status: str | None  # the terminal event's declared status, None while there is none
    end_ms: int | None  # the terminal event's ce_time

    @property
    def settled(self) -> bool:
        """Terminal and nothing left to happen: no task unfinished or dead-lettered (long cache)."""
        return (self.end_status is not None and self.status in ("completed", "cancelled", "expired", "failed")
                and not (self.status == "failed" and self.end_status != "failed")
                and all(t.status not in UNFINISHED and t.status != "dead-lettered" for t in self.tasks))

    @property
    def dead_lettered(self) -> list[TaskView]:
        return [t for t in self.tasks if t.status == "dead-lettered"]

    @property
    def max_ttl_s(self) -> float | None:
        if self.deadline_ms is None or self.started_ms is None:
            return None
        return round((self.deadline_ms - self.started_ms) / 1000, 3)

    def to_json(self) -> str:
        """The resource without ``links`` (the app adds them: they depend on the base URL), compact JSON."""
        body = {
            "jobId": self.job_id, "jobStatus": self.status, "statusReason": self.reason,
            "startedAt": rfc3339(self.started_ms), "stoppedAt": rfc3339(self.stopped_ms),
            "maxTTL": self.max_ttl_s, "deadline": rfc3339(self.deadline_ms),
            "tasks": [{"taskId": t.task_id, "service": t.service, "taskStatus": t.status,
                       "startedAt": rfc3339(t.started_ms), "stoppedAt": rfc3339(t.stopped_ms),
                       "taskMaxTTL": None, "attempts": t.attempts} for t in self.tasks],
        }
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def rfc3339(ms: int | None) -> str | None:
    """Epoch ms → ``2024-05-01T12:00:00.123Z`` (None stays None)."""
    return None if ms is None else format_time(datetime.fromtimestamp(ms / 1000, UTC))


def parse_time_ms(text: str | None) -> int | None:
    """RFC 3339 (``ce_time``) → epoch ms; None for a missing or unreadable time."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def reason_code(value: object) -> str | None:
    """A ``statusReason`` code from a declared reason (field), or None if it is not code-shaped.

    Only lower-case slugs pass, so a reason field holding free text can never leak into the resource.
    """
    return value if isinstance(value, str) and _REASON.match(value) else None


def derive_job(job_id: str, events: Iterable[EventFact], tasks: Iterable[TaskFact],
               consumers: Mapping[str, Sequence[str]]) -> JobView:
    """The job's resource from its facts (any order, duplicates allowed) and the flow's consumers."""
    by_id = {e.event_id: e for e in sorted(events, key=_event_order, reverse=True)}  # dedupe, earliest kept
    ordered = sorted(by_id.values(), key=_event_order)
    root = next((e for e in ordered if e.causation_id is None), None)
    terminal = next((e for e in ordered if e.end_status is not None), None)
    views = _task_views(ordered, list(tasks), consumers)
    started = root.time_ms if root else None
    deadline = root.deadline_ms if root else None
    if terminal is None:
        dead = any(t.status == "dead-lettered" for t in views)
        status, reason = ("failed", "dead-lettered") if dead else ("running", None)
        return JobView(job_id, status, reason, started, None, deadline, views, None, None)
    status, reason, stopped = terminal.end_status or "failed", terminal.end_reason, terminal.time_ms
    if status in _COMPENSATED:
        started_by_end = _caused_by(terminal.event_id, ordered)
        compensation = [t for t in views if t.input_id in started_by_end]
        if any(t.status == "dead-lettered" for t in compensation):
            status, reason, stopped = "failed", "dead-lettered", None
        elif any(t.status in UNFINISHED for t in compensation):
            status, stopped = "compensating", None
        else:
            stops = [t.stopped_ms for t in compensation if t.stopped_ms is not None]
            stopped = max([s for s in (terminal.time_ms, *stops) if s is not None], default=None)
    return JobView(job_id, status, reason, started, stopped, deadline, views, terminal.end_status, terminal.time_ms)


def _event_order(event: EventFact) -> tuple[int, str]:
    return (event.time_ms if event.time_ms is not None else _NEVER, event.event_id)


def _caused_by(event_id: str, events: Sequence[EventFact]) -> set[str]:
    """``event_id`` and every event of the job caused by it, transitively (via ``causation-id``)."""
    children: dict[str, list[str]] = {}
    for event in events:
        if event.causation_id is not None:
            children.setdefault(event.causation_id, []).append(event.event_id)
    found, stack = {event_id}, [event_id]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _task_views(events: Sequence[EventFact], tasks: list[TaskFact],
                consumers: Mapping[str, Sequence[str]]) -> tuple[TaskView, ...]:
    input_time = {e.event_id: e.time_ms for e in events}
    expected: dict[str, tuple[str, str]] = {}  # task id → (service, input id)
    for event in events:
        for service in consumers.get(event.event_type, ()):
            expected.setdefault(step_request_id(event.event_id, service), (service, event.event_id))
    records: dict[str, list[TaskFact]] = {}
    for record in tasks:
        records.setdefault(record.task_id, []).append(record)
    views = []
    for task_id in expected.keys() | records.keys():
        reported = records.get(task_id)
        if reported is None:
            service, input_id = expected[task_id]
            sort_ms = input_time.get(input_id) or _NEVER
            views.append(TaskView(task_id, service, "pending", None, None, 0, input_id, sort_ms))
            continue
        views.append(_reported(task_id, reported, input_time))
    return tuple(sorted(views, key=lambda t: (t.sort_ms, t.service, t.task_id)))


def _reported(task_id: str, records: list[TaskFact], input_time: Mapping[str, int | None]) -> TaskView:
    completed = [r for r in records if r.status == "completed"]
    if completed:
        status, stopped = "completed", min(r.stopped_ms for r in completed)
    else:
        last = max(records, key=lambda r: (r.stopped_ms, r.attempt, _RANK.get(r.status, 0)))
        status = last.status
        stopped = last.stopped_ms if status == "dead-lettered" else None
    first = min(records, key=lambda r: (r.started_ms, r.attempt))
    started = first.started_ms
    sort_ms = input_time.get(first.input_id) or started
    return TaskView(task_id, first.service, status, started, stopped, _attempts(records, status),
                    first.input_id, sort_ms)


def _attempts(records: list[TaskFact], status: str) -> int:
    """The highest attempt stated; a completion told only by the step's outputs (attempt 0, see
    ``intake._implied_task``) is the attempt after the last failed one."""
    stated = max((r.attempt for r in records if r.attempt > 0), default=0)
    if status == "completed" and not any(r.status == "completed" and r.attempt > 0 for r in records):
        return stated + 1
    return stated
