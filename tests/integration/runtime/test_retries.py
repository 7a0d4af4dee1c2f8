"""Retry topics and the dead-letter topic against the real broker.

A failing event moves to `<service>.retry.<n>` and comes back when due, without holding back other
keys; permanent failures, exhausted retries and poison records land in `<service>.dlq` with the
SPEC §3 failure headers.
"""

from __future__ import annotations

import struct
import time
from collections import defaultdict

from choreo import Context, PermanentError, Service
from choreo.retry import RetryPolicy
from choreo.testing.processes import wait_until
from tests.integration.runtime.conftest import EchoEnv, running
from tests.support.echo import Ping, Pong
from tests.support.kafka import count_at_least, headers_of, produce_raw, read_topic

FAST = RetryPolicy(delays=(0.5, 1.0), jitter=0.0)

DLQ_HEADERS = {"dlq-reason", "dlq-error-type", "dlq-error-message", "dlq-traceback", "dlq-attempts",
               "dlq-first-failure", "dlq-last-failure", "dlq-service", "retry-original-topic",
               "retry-original-partition", "retry-original-offset"}


def test_event_failing_twice_succeeds_on_attempt_three_after_the_delays(echo_env: EchoEnv, unique) -> None:
    service = Service(unique("flaky"), retry=FAST)
    attempts: dict[str, list[tuple[int, float]]] = defaultdict(list)

    @service.handler(Ping)
    def flaky(event: Ping, ctx: Context) -> Pong:
        attempts[event.key].append((ctx.attempt, time.monotonic()))
        if event.key == "flaky" and len(attempts[event.key]) < 3:
            raise ConnectionError("downstream unavailable")
        return Pong(key=event.key, seq=event.seq)

    with echo_env.publisher() as publisher:
        publisher.publish(Ping(key="flaky", seq=1))
        for i in range(20):
            publisher.publish(Ping(key=f"other-{i}", seq=i))
    with running(service, echo_env):
        pongs = read_topic(echo_env.kafka_config, echo_env.out_topic, until=count_at_least(21), timeout_s=60)
    assert len(pongs) == 21
    tries = attempts["flaky"]
    assert [attempt for attempt, _ in tries] == [1, 2, 3]
    first_wait, second_wait = tries[1][1] - tries[0][1], tries[2][1] - tries[1][1]
    assert first_wait >= 0.5 and second_wait >= 1.0, (first_wait, second_wait)
    # Other keys were handled while the flaky one waited: none of them waited for its retries.
    other_done = max(t for key, ts in attempts.items() if key != "flaky" for _, t in ts)
    assert other_done < tries[1][1]


def test_permanent_error_goes_straight_to_the_dlq_with_every_header(echo_env: EchoEnv, unique) -> None:
    service = Service(unique("strict"), retry=FAST)
    calls: list[int] = []

    @service.handler(Ping)
    def strict(event: Ping, ctx: Context) -> Pong:
        calls.append(ctx.attempt)
        raise PermanentError(f"order {event.key} can never be paid")

    with echo_env.publisher() as publisher:
        root = publisher.publish(Ping(key="bad", seq=1))
    with running(service, echo_env):
        dead = read_topic(echo_env.kafka_config, f"{service.name}.dlq", until=count_at_least(1))
    headers = headers_of(dead[0])
    assert DLQ_HEADERS <= set(headers)
    assert headers["dlq-reason"] == "permanent-error"
    assert headers["dlq-error-type"] == "PermanentError"
    assert "can never be paid" in headers["dlq-error-message"]
    assert headers["dlq-attempts"] == "1" and calls == [1]
    assert headers["retry-original-topic"] == echo_env.in_topic
    assert headers["ce_id"] == root.event_id and headers["correlation-id"] == root.correlation_id
    assert dead[0].key() == b"bad"


def test_retries_exhausted_lands_in_the_dlq(echo_env: EchoEnv, unique) -> None:
    service = Service(unique("broken"), retry=RetryPolicy(delays=(0.2, 0.2), jitter=0.0))
    calls: list[int] = []

    @service.handler(Ping)
    def broken(event: Ping, ctx: Context) -> Pong:
        calls.append(ctx.attempt)
        raise TimeoutError("still down")

    with echo_env.publisher() as publisher:
        publisher.publish(Ping(key="k", seq=1))
    with running(service, echo_env):
        dead = read_topic(echo_env.kafka_config, f"{service.name}.dlq", until=count_at_least(1))
    headers = headers_of(dead[0])
    assert headers["dlq-reason"] == "retries-exhausted"
    assert headers["dlq-attempts"] == "3" and calls == [1, 2, 3]
    assert int(headers["dlq-first-failure"]) <= int(headers["dlq-last-failure"])
    assert headers["retry-original-topic"] == echo_env.in_topic  # not the retry topic it came from


def test_poison_records_are_dead_lettered_with_their_reason(echo_env: EchoEnv, unique) -> None:
    service = Service(unique("poison"), retry=FAST)
    service.handler(Ping, emits=[Pong])(lambda event, ctx: Pong(key=event.key, seq=event.seq))
    ce = [("ce_specversion", b"1.0"), ("ce_type", b"io.choreo.test.Ping"), ("ce_source", b"t")]
    produce_raw(echo_env.kafka_config, echo_env.in_topic, [
        (b"p", b"\xff\xfegarbage", [("ce_id", b"g1"), *ce]),
        (b"p", b"\x00" + struct.pack(">I", 987654) + b"\x02", [("ce_id", b"g2"), *ce]),
        (b"p", b"no headers", []),
    ])
    with running(service, echo_env):
        dead = read_topic(echo_env.kafka_config, f"{service.name}.dlq", until=count_at_least(3))
    reasons = sorted(headers_of(m)["dlq-error-message"] for m in dead)
    assert all(headers_of(m)["dlq-reason"] == "poison" for m in dead)
    assert any("unknown schema id 987654" in r for r in reasons)
    assert any("wire format" in r for r in reasons)
    assert any("missing CloudEvents header" in r for r in reasons)
    assert sorted(m.value() for m in dead)[0] is not None  # the raw bytes are kept


def test_without_ordered_retries_a_later_event_of_the_key_overtakes(echo_env: EchoEnv, unique) -> None:
    """Documented behaviour: retries never block a partition, so the same key's next event goes first."""
    service = Service(unique("overtake"), retry=FAST)
    handled: list[int] = []
    failed_once: set[int] = set()

    @service.handler(Ping)
    def first_fails_once(event: Ping, ctx: Context) -> Pong:
        if event.seq == 1 and event.seq not in failed_once:
            failed_once.add(event.seq)
            raise ConnectionError("flaky")
        handled.append(event.seq)
        return Pong(key=event.key, seq=event.seq)

    with echo_env.publisher() as publisher:
        publisher.publish(Ping(key="same", seq=1))
        publisher.publish(Ping(key="same", seq=2))
    with running(service, echo_env):
        read_topic(echo_env.kafka_config, echo_env.out_topic, until=count_at_least(2))
    assert handled == [2, 1]


def test_a_retry_waiting_through_a_rebalance_is_still_delivered(echo_env: EchoEnv, unique) -> None:
    """A paused retry partition revoked and re-assigned must be fetched again (librdkafka keeps pause flags)."""
    name = unique("rebalanced")
    attempts: list[int] = []

    def build() -> Service:
        service = Service(name, retry=RetryPolicy(delays=(8.0,), jitter=0.0))

        @service.handler(Ping)
        def fail_first(event: Ping, ctx: Context) -> Pong:
            attempts.append(ctx.attempt)
            if ctx.attempt == 1:
                raise ConnectionError("first attempt fails")
            return Pong(key=event.key, seq=event.seq)

        return service

    with echo_env.publisher() as publisher:
        publisher.publish(Ping(key="r", seq=1))
    with running(build(), echo_env) as first:
        wait_until(lambda: attempts == [1], 30, message="first attempt")
        # Let the worker read the not-yet-due retry record and pause its partition, then make the group
        # rebalance twice: a second member joins (everything is revoked) and leaves again.
        wait_until(lambda: bool(first._paused), 30, message="retry partition paused")
        with running(build(), echo_env):
            pass
        pongs = read_topic(echo_env.kafka_config, echo_env.out_topic, until=count_at_least(1), timeout_s=60)
    assert len(pongs) == 1 and attempts[-1] == 2
