"""Task records on choreo.tasks, keyed by job: every step outcome its outputs do not tell (a step that
emitted nothing, a retry, a dead letter); a step that emitted events is reported by them."""

from __future__ import annotations

from choreo import Context, PermanentError, RetryableError, Service
from choreo.envelope import step_request_id
from choreo.retry import RetryPolicy
from choreo.tasks import TASKS_TOPIC, decode_task
from choreo.testing.processes import wait_until
from tests.integration.runtime.conftest import EchoEnv, running
from tests.support.echo import Ping, Pong
from tests.support.kafka import headers_of, read_all


def _service(name: str) -> Service:
    """seq 0 is handled; seq 1 fails once, then is handled; seq 2 fails for good; seq 3 emits nothing."""
    service = Service(name, retry=RetryPolicy(delays=(0.3,), jitter=0.0))

    @service.handler(Ping)
    def handle(event: Ping, ctx: Context) -> Pong:
        if event.seq == 1 and ctx.attempt == 1:
            raise RetryableError("the gateway is down")
        if event.seq == 2:
            raise PermanentError("never")
        if event.seq == 3:
            return None
        return Pong(key=event.key, seq=event.seq)

    return service


def _records_of(env: EchoEnv, jobs: set[str]) -> list:
    return [decode_task(m.value()) for m in read_all(env.settings, TASKS_TOPIC) if m.key().decode() in jobs]


def test_every_step_reports_its_outcome_keyed_by_job(echo_env: EchoEnv, unique) -> None:
    name = unique("tasks")
    with echo_env.publisher() as publisher:
        roots = [publisher.publish(Ping(key=f"k{seq}", seq=seq)) for seq in range(4)]
    jobs = {root.correlation_id for root in roots}
    with running(_service(name), echo_env) as worker:
        # Every input settled (seq 0, 1, 3 handled; seq 2 dead-lettered): all their records are acknowledged.
        wait_until(lambda: worker.handled >= 3 and len(_records_of(echo_env, jobs)) >= 3, 30,
                   message="every step settled")
    records = _records_of(echo_env, jobs)
    outcomes = sorted((r.job, r.status, r.attempt) for r in records)
    by_seq = {root.correlation_id: seq for seq, root in enumerate(roots)}
    assert sorted((by_seq[job], status, attempt) for job, status, attempt in outcomes) == [
        (1, "retrying", 1), (2, "dead-lettered", 1), (3, "completed", 1)]
    for record in records:
        root = next(r for r in roots if r.correlation_id == record.job)
        assert record.service == name and record.input == root.event_id and record.type == "io.choreo.test.Ping"
        assert record.task == step_request_id(root.event_id, name)  # what an observer computes beforehand
        assert record.started <= record.stopped
    raw = [m.value() for m in read_all(echo_env.settings, TASKS_TOPIC) if m.key().decode() in jobs]
    assert raw and not any(b"gateway" in value or b"never" in value for value in raw)  # no error text
    # The steps that emitted are told by their outputs: request-id = the task, ce_source, causation-id.
    pongs = {headers_of(m)["causation-id"]: headers_of(m) for m in read_all(echo_env.settings, echo_env.out_topic)}
    for seq in (0, 1):
        pong = pongs[roots[seq].event_id]
        assert pong["request-id"] == step_request_id(roots[seq].event_id, name) and pong["ce_source"] == name


def test_a_setting_turns_task_records_off(echo_env: EchoEnv, unique) -> None:
    echo_env.settings = echo_env.settings.model_copy(update={"task_records": False})
    with echo_env.publisher() as publisher:
        root = publisher.publish(Ping(key="quiet", seq=3))  # emits nothing: would be reported
    with running(_service(unique("tasks")), echo_env) as worker:
        wait_until(lambda: worker.handled >= 1, 30, message="handled and settled, its records acknowledged")
    assert _records_of(echo_env, {root.correlation_id}) == []
