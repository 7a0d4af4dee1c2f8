"""Ordered retries per key: later events of a key wait behind the one in retry, across a restart."""

from __future__ import annotations

from choreo import Context, Service
from choreo.retry import RetryPolicy
from choreo.testing.processes import wait_until
from tests.integration.runtime.conftest import EchoEnv, running
from tests.support.echo import Ping, Pong
from tests.support.kafka import count_at_least, read_topic


def _ordered_service(name: str, delays: tuple[float, ...], failures: dict[int, int],
                     handled: list[tuple[str, int]]) -> Service:
    """Ping seq N of key 'same' fails failures[N] times before it succeeds."""
    service = Service(name, retry=RetryPolicy(delays=delays, jitter=0.0), ordered_retries=True)

    @service.handler(Ping)
    def handle(event: Ping, ctx: Context) -> Pong:
        if event.key == "same" and failures.get(event.seq, 0) > 0:
            failures[event.seq] -= 1
            raise ConnectionError("flaky")
        handled.append((event.key, event.seq))
        return Pong(key=event.key, seq=event.seq)

    return service


def test_later_events_of_the_key_wait_and_other_keys_flow(echo_env: EchoEnv, unique) -> None:
    handled: list[tuple[str, int]] = []
    service = _ordered_service(unique("ordered"), (0.5, 0.5), {1: 2, 3: 1}, handled)
    with echo_env.publisher() as publisher:
        for seq in (1, 2, 3, 4):
            publisher.publish(Ping(key="same", seq=seq))
        for i in range(10):
            publisher.publish(Ping(key=f"other-{i}", seq=i))
    with running(service, echo_env):
        read_topic(echo_env.kafka_config, echo_env.out_topic, until=count_at_least(14), timeout_s=60)
    same = [seq for key, seq in handled if key == "same"]
    assert same == [1, 2, 3, 4]
    # Other keys did not wait for key 'same': all of them were handled before its first event.
    first_same = handled.index(("same", 1))
    assert {key for key, _ in handled[:first_same]} >= {f"other-{i}" for i in range(10)}


def test_parked_events_survive_a_restart(echo_env: EchoEnv, unique) -> None:
    handled: list[tuple[str, int]] = []
    name = unique("ordered")
    failures = {1: 1}
    with echo_env.publisher() as publisher:
        for seq in (1, 2, 3):
            publisher.publish(Ping(key="same", seq=seq))
    service = _ordered_service(name, (3.0,), failures, handled)
    with running(service, echo_env) as worker:
        wait_until(lambda: worker.parked >= 2, 30, message="two events parked")
    assert handled == []  # stopped while seq 1 waits in retry, 2 and 3 parked behind it
    restarted = _ordered_service(name, (3.0,), failures, handled)
    with running(restarted, echo_env):
        read_topic(echo_env.kafka_config, echo_env.out_topic, until=count_at_least(3), timeout_s=60)
    assert [seq for _, seq in handled] == [1, 2, 3]
