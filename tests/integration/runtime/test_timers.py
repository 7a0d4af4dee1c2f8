"""Durable timers against the real broker: due time, cancel, on_timer decisions, restart, rebalance."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from choreo import Context, Service
from choreo.testing.processes import wait_until
from tests.integration.runtime.conftest import TimedEnv, running
from tests.support.kafka import headers_of, read_all, read_topic
from tests.support.timed import Reminder, Start, Stop


def _timer_service(name: str, *, transactional: bool = False, due: dict[str, datetime] | None = None) -> Service:
    """Start schedules a Reminder ``delay_ms`` ahead (its due time noted in ``due``); Stop cancels it."""
    service = Service(name)

    @service.handler(Start, transactional=transactional)
    def start(event: Start, ctx: Context) -> None:
        at = datetime.now(UTC) + timedelta(milliseconds=event.delay_ms)
        if due is not None:
            due[event.key] = at
        ctx.schedule(Reminder(key=event.key, seq=event.seq), at=at, name="remind")

    @service.handler(Stop, transactional=transactional)
    def stop(event: Stop, ctx: Context) -> None:
        ctx.cancel("remind")

    return service


def _reminders(env: TimedEnv, count: int, timeout_s: float = 30) -> list:
    return read_topic(env.kafka_config, env.out_topic, until=lambda got: len(got) >= count, timeout_s=timeout_s)


def _publish(env: TimedEnv, *events: object) -> None:
    with env.publisher() as publisher:
        for event in events:
            publisher.publish(event)  # type: ignore[arg-type]


def test_a_timer_fires_at_its_due_time_with_no_further_input(timed_env: TimedEnv, unique) -> None:
    for transactional in (False, True):  # written in the handler's transaction, or at the batch's settle
        due: dict[str, datetime] = {}
        service = _timer_service(unique("timers") + ("-tx" if transactional else ""),
                                 transactional=transactional, due=due)
        key = f"k-{transactional}"
        with running(service, timed_env):
            _publish(timed_env, Start(key=key, seq=1, delay_ms=1500))
            got = read_topic(timed_env.kafka_config, timed_env.out_topic,
                             until=lambda got, key=key: any(m.key() == key.encode() for m in got), timeout_s=30)
        reminder = next(m for m in got if m.key() == key.encode())
        late_ms = reminder.timestamp()[1] - due[key].timestamp() * 1000  # produced when fired
        assert -5 <= late_ms < 400, f"fired {late_ms:.0f} ms after its due time"
        headers = headers_of(reminder)
        assert headers["ce_type"] == "io.choreo.test.Reminder"
        start = next(m for m in read_all(timed_env.settings, timed_env.in_topic) if m.key() == key.encode())
        assert headers["correlation-id"] == headers_of(start)["correlation-id"]  # the timer stays in the job


def test_a_cancelled_timer_never_fires(timed_env: TimedEnv, unique) -> None:
    service = _timer_service(unique("timers"), transactional=True)
    with running(service, timed_env):
        _publish(timed_env, Start(key="cancelled", seq=1, delay_ms=1500), Stop(key="cancelled"),
                 Start(key="kept", seq=2, delay_ms=1500))
        _reminders(timed_env, 1)
        time.sleep(1.0)  # well past the cancelled timer's due time
    keys = [m.key() for m in read_all(timed_env.settings, timed_env.out_topic)]
    assert keys == [b"kept"]


def test_timers_survive_a_restart_and_fire_once(timed_env: TimedEnv, unique) -> None:
    name = unique("timers")
    with running(_timer_service(name), timed_env) as worker:
        _publish(timed_env, *(Start(key=f"k{i}", seq=i, delay_ms=2500) for i in range(10)))
        wait_until(lambda: worker.handled >= 10, 30, message="starts handled")
    assert read_all(timed_env.settings, timed_env.out_topic) == []  # stopped before any was due
    time.sleep(2.0)
    with running(_timer_service(name), timed_env) as worker:
        got = _reminders(timed_env, 10)
        wait_until(lambda: worker.handled >= 10, 30, message="every fired timer settled")
    got = read_all(timed_env.settings, timed_env.out_topic)
    ids = [headers_of(m)["ce_id"] for m in got]
    assert len(ids) == len(set(ids)) == 10
    assert sorted(m.key().decode() for m in got) == sorted(f"k{i}" for i in range(10))


def test_timers_move_with_their_partitions_in_a_rebalance(timed_env: TimedEnv, unique) -> None:
    name = unique("timers")
    keys = [f"key-{i}" for i in range(40)]
    with running(_timer_service(name), timed_env) as first:
        _publish(timed_env, *(Start(key=k, seq=i, delay_ms=4000) for i, k in enumerate(keys)))
        wait_until(lambda: first.handled >= len(keys), 30, message="every timer scheduled")
        with running(_timer_service(name), timed_env) as second:  # takes half the partitions, and their timers
            _reminders(timed_env, len(keys), timeout_s=60)
            wait_until(lambda: first.handled + second.handled >= 2 * len(keys), 30,
                       message="every fired timer settled")
    got = read_all(timed_env.settings, timed_env.out_topic)
    ids = {headers_of(m)["ce_id"] for m in got}
    assert len(ids) == len(keys), "every timer fired (same id if fired twice across the rebalance)"
    assert sorted({m.key().decode() for m in got}) == sorted(keys)


def test_an_on_timer_handler_decides_what_a_due_timer_emits(timed_env: TimedEnv, unique) -> None:
    service = _timer_service(unique("timers"), transactional=True)
    decided: list[int] = []

    @service.on_timer(Reminder)
    def remind(event: Reminder, ctx: Context) -> Reminder | None:
        decided.append(event.seq)
        return Reminder(key=event.key, seq=event.seq * 10) if event.seq % 2 else None

    with running(service, timed_env) as worker:
        _publish(timed_env, Start(key="odd", seq=1, delay_ms=300), Start(key="even", seq=2, delay_ms=300))
        got = _reminders(timed_env, 1)
        wait_until(lambda: len(decided) >= 2 and worker.handled >= 4, 10, message="both timers fired and settled")
    got = read_all(timed_env.settings, timed_env.out_topic)
    assert [(m.key(), headers_of(m)["ce_type"]) for m in got] == [(b"odd", "io.choreo.test.Reminder")]
