"""A stalled broker (SIGSTOP) while events are being retried: nothing is lost, nothing answered twice.

Writing retries and outputs fails or times out while the broker is stopped; the batch is re-run and
its offsets are stored only once everything is acknowledged.
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from choreo import Context, Service
from choreo.kafka.embedded import EmbeddedBroker
from choreo.retry import RetryPolicy
from choreo.testing.processes import wait_until
from tests.integration.runtime.conftest import EchoEnv, running
from tests.support.echo import Ping, Pong
from tests.support.kafka import headers_of, read_all, read_topic

TOTAL = 400
STALL_S = 4.0  # how long the fault lasts: a duration we inject, not a wait for a condition


def _stall(broker: EmbeddedBroker) -> None:
    """Freeze the broker for STALL_S (SIGSTOP/SIGCONT): the fault's length, not a wait for a condition."""
    broker.pause()
    try:
        time.sleep(STALL_S)
    finally:
        broker.resume()


def _wait_answered(env: EchoEnv, causes: int) -> None:
    """Until every one of ``causes`` inputs has an output (the service is still running)."""
    read_topic(env.kafka_config, env.out_topic, timeout_s=120,
               until=lambda ms: len({headers_of(m)["causation-id"] for m in ms}) >= causes)


def _output_ids_by_cause(env: EchoEnv) -> dict[str, set[str]]:
    """Output ``ce_id``s per input id, over everything in the output topic (read once the service stopped)."""
    ids_by_cause: dict[str, set[str]] = defaultdict(set)
    for message in read_all(env.settings, env.out_topic):
        ids_by_cause[headers_of(message)["causation-id"]].add(headers_of(message)["ce_id"])
    return ids_by_cause


@pytest.mark.timeout(180)
def test_broker_stall_during_retries_loses_nothing(echo_env: EchoEnv, unique,
                                                   kafka_broker: EmbeddedBroker | None) -> None:
    if kafka_broker is None:
        pytest.skip("needs the embedded broker to SIGSTOP (an external cluster is in use)")
    service = Service(unique("stalled"), retry=RetryPolicy(delays=(0.5,), jitter=0.0))

    @service.handler(Ping)
    def fail_first(event: Ping, ctx: Context) -> Pong:
        if ctx.attempt == 1:
            raise ConnectionError("first attempt fails")
        return Pong(key=event.key, seq=event.seq)

    with echo_env.publisher() as publisher:
        inputs = {publisher.publish(Ping(key=f"k{i % 40}", seq=i)).event_id for i in range(TOTAL)}
    with running(service, echo_env) as worker:
        wait_until(lambda: worker.batches > 0, 30, message="first batch routed to retry")
        _stall(kafka_broker)
        _wait_answered(echo_env, len(inputs))
    ids_by_cause = _output_ids_by_cause(echo_env)
    assert set(ids_by_cause) == inputs
    assert all(len(ids) == 1 for ids in ids_by_cause.values())  # nothing answered twice with new ids


@pytest.mark.timeout(180)
def test_outputs_that_time_out_in_a_stall_are_handled_again(echo_env: EchoEnv, unique, caplog,
                                                            kafka_broker: EmbeddedBroker | None) -> None:
    """A stall longer than message.timeout.ms: outputs time out, the batch is handled again.

    After the timeouts librdkafka bumps the idempotent producer's epoch and Tansu answers every later
    record with PRODUCER_FENCED: without a new producer the batch would be re-run for ever.
    """
    if kafka_broker is None:
        pytest.skip("needs the embedded broker to SIGSTOP (an external cluster is in use)")
    total = 3000
    settings = echo_env.settings.model_copy(update={"kafka_config": {"message.timeout.ms": 1500}})
    env = EchoEnv(settings, echo_env.in_topic, echo_env.out_topic, echo_env.catalog, echo_env.kafka_config)
    service = Service(unique("timedout"))

    @service.handler(Ping)
    def echo(event: Ping, ctx: Context) -> Pong:
        time.sleep(0.001)  # keep the stream going while the broker stalls
        return Pong(key=event.key, seq=event.seq)

    with env.publisher() as publisher:
        inputs = {publisher.publish(Ping(key=f"k{i % 40}", seq=i)).event_id for i in range(total)}
    with running(service, env, batch_size=100) as worker:
        wait_until(lambda: worker.handled > 200, 60, message="the stream under way")
        _stall(kafka_broker)
        _wait_answered(echo_env, len(inputs))
    ids_by_cause = _output_ids_by_cause(echo_env)
    assert set(ids_by_cause) == inputs
    assert all(len(ids) == 1 for ids in ids_by_cause.values())  # nothing answered twice with new ids
    assert any("must be handled again" in r.getMessage() for r in caplog.records), "no flush failed: no fault"
