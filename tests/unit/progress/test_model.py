"""The job/task derivation: a pure function of the set of facts (order, duplicates and gaps tolerated)."""

from __future__ import annotations

import itertools
import json
import random

from choreo.envelope import step_request_id
from choreo.progress.model import EventFact, TaskFact, derive_job, parse_time_ms, reason_code, rfc3339

JOB = "job-1"
CONSUMERS = {"OrderPlaced": ("fraud", "order", "payment"), "PaymentAuthorized": ("inventory",),
             "OrderCancelled": ("inventory", "payment"), "OrderCompleted": ("notification",),
             "OrderExpired": ("payment",)}
T0 = 1_700_000_000_000


def ev(event_id: str, type_: str, at: int, cause: str | None = None, **kw: object) -> EventFact:
    return EventFact(event_id, JOB, type_, cause, T0 + at, **kw)  # type: ignore[arg-type]


def rec(input_id: str, service: str, status: str, attempt: int = 1, at: int = 0) -> TaskFact:
    return TaskFact(step_request_id(input_id, service), JOB, service, status, attempt, input_id, "X",
                    T0 + at, T0 + at + 5)


ROOT = ev("e1", "OrderPlaced", 0, deadline_ms=T0 + 30_000)


def tasks_of(view):  # service → status
    return {(t.service, t.input_id): t.status for t in view.tasks}


def test_root_gives_start_deadline_and_expected_tasks() -> None:
    view = derive_job(JOB, [ROOT], [], CONSUMERS)
    assert view.status == "running" and view.reason is None
    assert view.started_ms == T0 and view.deadline_ms == T0 + 30_000 and view.max_ttl_s == 30.0
    assert tasks_of(view) == {("fraud", "e1"): "pending", ("order", "e1"): "pending", ("payment", "e1"): "pending"}
    assert {t.task_id for t in view.tasks} == {step_request_id("e1", s) for s in ("fraud", "order", "payment")}
    body = json.loads(view.to_json())
    assert list(body) == ["jobId", "jobStatus", "statusReason", "startedAt", "stoppedAt", "maxTTL", "deadline",
                          "tasks"]
    assert body["startedAt"].endswith("Z") and body["tasks"][0]["attempts"] == 0


def test_task_statuses_and_attempts() -> None:
    records = [rec("e1", "payment", "retrying", 1, 10), rec("e1", "payment", "retrying", 2, 20),
               rec("e1", "fraud", "completed", 1, 5)]
    view = derive_job(JOB, [ROOT], records, CONSUMERS)
    payment = next(t for t in view.tasks if t.service == "payment")
    assert payment.status == "retrying" and payment.attempts == 2 and payment.stopped_ms is None
    assert payment.started_ms == T0 + 10
    fraud = next(t for t in view.tasks if t.service == "fraud")
    assert fraud.status == "completed" and fraud.stopped_ms == T0 + 10


def test_any_order_and_duplicates_give_the_same_resource() -> None:
    events = [ROOT, ev("e2", "PaymentAuthorized", 50, "e1"), ev("e3", "OrderCancelled", 90, "e1",
                                                                  end_status="cancelled", end_reason="fraud-rejected")]
    records = [rec("e1", "payment", "completed", 1, 10), rec("e2", "inventory", "retrying", 1, 60),
               rec("e2", "inventory", "completed", 2, 70), rec("e3", "payment", "completed", 1, 95)]
    expected = derive_job(JOB, events, records, CONSUMERS).to_json()
    rng = random.Random(7)
    for _ in range(30):
        facts_e = events + rng.sample(events, 2)
        facts_t = records + rng.sample(records, 2)
        rng.shuffle(facts_e)
        rng.shuffle(facts_t)
        assert derive_job(JOB, facts_e, facts_t, CONSUMERS).to_json() == expected


def test_task_record_before_its_input_and_event_before_root() -> None:
    # Only a task record: the job exists, the task shows; no start known yet.
    view = derive_job(JOB, [], [rec("e2", "inventory", "completed", 1, 60)], CONSUMERS)
    assert view.status == "running" and view.started_ms is None and tasks_of(view) == {("inventory", "e2"): "completed"}
    # A caused event before the root: expected tasks of it already, start still unknown.
    view = derive_job(JOB, [ev("e2", "PaymentAuthorized", 50, "e1")], [], CONSUMERS)
    assert view.started_ms is None and tasks_of(view) == {("inventory", "e2"): "pending"}


def test_compensating_until_the_terminal_events_tasks_finish() -> None:
    cancel = ev("e3", "OrderCancelled", 90, "e2x", end_status="cancelled", end_reason="payment-declined")
    events = [ROOT, cancel]
    view = derive_job(JOB, events, [], CONSUMERS)
    assert (view.status, view.reason, view.stopped_ms) == ("compensating", "payment-declined", None)
    view = derive_job(JOB, events, [rec("e3", "payment", "completed", 1, 95)], CONSUMERS)
    assert view.status == "compensating"  # inventory still pending
    done = [rec("e3", "payment", "completed", 1, 95), rec("e3", "inventory", "completed", 1, 99)]
    view = derive_job(JOB, events, done, CONSUMERS)
    assert (view.status, view.reason) == ("cancelled", "payment-declined")
    assert view.stopped_ms == T0 + 104  # the last compensation step's stop
    # Steps of the root still pending do not hold the status (they are not compensation) ...
    assert any(t.status == "pending" for t in view.tasks)
    assert not view.settled  # ... but they keep the cache short


def test_compensation_includes_events_caused_by_the_terminal_event() -> None:
    events = [ROOT, ev("e3", "OrderExpired", 90, "timer", end_status="expired", end_reason="expired"),
              ev("e4", "PaymentAuthorized", 95, "e3")]  # caused by the terminal event → its steps compensate
    records = [rec("e3", "payment", "completed", 1, 91)]
    assert derive_job(JOB, events, records, CONSUMERS).status == "compensating"
    records.append(rec("e4", "inventory", "completed", 1, 96))
    assert derive_job(JOB, events, records, CONSUMERS).status == "expired"


def test_first_terminal_event_wins_whatever_the_arrival_order() -> None:
    done = ev("e8", "OrderCompleted", 100, "e7", end_status="completed")
    late = ev("e9", "OrderCancelled", 200, "e7", end_status="cancelled", end_reason="stock-unavailable")
    for facts in itertools.permutations([ROOT, done, late]):
        view = derive_job(JOB, list(facts), [], CONSUMERS)
        assert (view.status, view.reason, view.end_status) == ("completed", None, "completed")


def test_failed_while_dead_lettered_until_a_replay_completes() -> None:
    dead = [rec("e1", "payment", "retrying", 1, 1), rec("e1", "payment", "retrying", 2, 2),
            rec("e1", "payment", "dead-lettered", 3, 3)]
    view = derive_job(JOB, [ROOT], dead, CONSUMERS)
    assert (view.status, view.reason) == ("failed", "dead-lettered")
    payment = next(t for t in view.tasks if t.service == "payment")
    assert payment.status == "dead-lettered" and payment.attempts == 3 and payment.stopped_ms == T0 + 8
    # The replay is retrying: the job runs again (the latest record is no longer the dead letter).
    again = dead + [rec("e1", "payment", "retrying", 1, 500)]
    assert derive_job(JOB, [ROOT], again, CONSUMERS).status == "running"
    # The replay lets it finish: the same task id completes.
    healed = dead + [rec("e1", "payment", "completed", 1, 1000)]
    for facts in (healed, list(reversed(healed))):
        view = derive_job(JOB, [ROOT], facts, CONSUMERS)
        assert view.status == "running" and view.reason is None
        assert next(t for t in view.tasks if t.service == "payment").status == "completed"


def test_dead_letters_and_terminal_events() -> None:
    completed = [ROOT, ev("e8", "OrderCompleted", 100, "e7", end_status="completed")]
    # A completed order whose notification is dead-lettered stays completed (the task shows it).
    view = derive_job(JOB, completed, [rec("e8", "notification", "dead-lettered", 3, 110)], CONSUMERS)
    assert (view.status, view.reason) == ("completed", None) and view.dead_lettered and not view.settled
    # A cancelled order whose refund is dead-lettered is failed: compensation cannot finish by itself.
    cancelled = [ROOT, ev("e3", "OrderCancelled", 90, "e1", end_status="cancelled", end_reason="fraud-rejected")]
    view = derive_job(JOB, cancelled, [rec("e3", "payment", "dead-lettered", 3, 95)], CONSUMERS)
    assert (view.status, view.reason, view.stopped_ms) == ("failed", "dead-lettered", None)


def test_settled_only_when_terminal_and_nothing_is_unfinished() -> None:
    events = [ROOT, ev("e8", "OrderCompleted", 100, "e1", end_status="completed")]
    records = [rec("e1", s, "completed", 1, 10) for s in ("fraud", "order", "payment")]
    assert not derive_job(JOB, events, records, CONSUMERS).settled  # notification pending
    records.append(rec("e8", "notification", "completed", 1, 120))
    view = derive_job(JOB, events, records, CONSUMERS)
    assert view.settled and view.stopped_ms == T0 + 100


def test_helpers() -> None:
    assert rfc3339(T0) == "2023-11-14T22:13:20.000Z" and rfc3339(None) is None
    assert parse_time_ms("2023-11-14T22:13:20.000Z") == T0 and parse_time_ms("nonsense") is None
    assert reason_code("payment-declined") == "payment-declined"
    assert reason_code("amount over card limit") is None and reason_code(3) is None


def test_a_completion_told_by_outputs_or_a_duplicate_counts_the_attempt_after_the_failed_ones() -> None:
    """Attempt 0 is "not stated": an implied completion (the step's outputs) or a duplicate's report."""
    retried = [rec("e1", "payment", "retrying", 1, 10), rec("e1", "payment", "retrying", 2, 20),
               rec("e1", "payment", "completed", 0, 30)]
    once = [rec("e1", "fraud", "completed", 0, 5)]
    stated = [rec("e1", "order", "retrying", 1, 10), rec("e1", "order", "completed", 2, 20),
              rec("e1", "order", "completed", 0, 40)]  # a late duplicate's report changes nothing
    view = derive_job(JOB, [ROOT], retried + once + stated, CONSUMERS)
    attempts = {t.service: (t.status, t.attempts) for t in view.tasks}
    assert attempts == {"payment": ("completed", 3), "fraud": ("completed", 1), "order": ("completed", 2)}
