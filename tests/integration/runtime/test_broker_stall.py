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
from tests.support.kafka import headers_of, read_topic

TOTAL = 400
STALL_S = 4.0  # how long the fault lasts: a duration we inject, not a wait for a condition


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
        kafka_broker.pause()
        try:
            time.sleep(STALL_S)
        finally:
            kafka_broker.resume()
        outputs = read_topic(echo_env.kafka_config, echo_env.out_topic, timeout_s=120,
                             until=lambda ms: len({headers_of(m)["causation-id"] for m in ms}) >= TOTAL)
    ids_by_cause: dict[str, set[str]] = defaultdict(set)
    for message in outputs:
        ids_by_cause[headers_of(message)["causation-id"]].add(headers_of(message)["ce_id"])
    assert set(ids_by_cause) == inputs
    assert all(len(ids) == 1 for ids in ids_by_cause.values())
