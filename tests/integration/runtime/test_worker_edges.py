"""Worker edge cases with real clients: offsets of partitions no longer ours, a start that fails half way, a
failed settle between batches."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from choreo.errors import ProduceError
from choreo.idempotency import open_store
from choreo.kafka.producer import ReliableProducer
from choreo.runtime.worker import Worker
from choreo.testing.processes import wait_until
from tests.integration.runtime.conftest import EchoEnv, running
from tests.support.echo import Ping, make_echo_service


def test_offsets_of_partitions_no_longer_assigned_are_not_stored(echo_env: EchoEnv, unique: Callable[[str], str],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker(make_echo_service(unique("echo")).bind(echo_env.catalog), echo_env.settings)
    consumer = Consumer({**echo_env.kafka_config, "group.id": unique("g"), "enable.auto.offset.store": False})
    try:
        # The consumer still holds partition 1, so only the worker's own bookkeeping keeps it out.
        consumer.assign([TopicPartition(echo_env.in_topic, 0), TopicPartition(echo_env.in_topic, 1)])
        worker._assigned = {(echo_env.in_topic, 0)}
        gone = TopicPartition(echo_env.in_topic, 1, 5)  # revoked while its marks were being written
        worker._store_offsets(consumer, [[gone], [TopicPartition(echo_env.in_topic, 0, 7)]])
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(echo_env.in_topic, 0), TopicPartition(echo_env.in_topic, 1)],
                                       timeout=10)
        assert [tp.offset for tp in committed][0] == 7
        assert committed[1].offset < 0  # nothing stored for the partition that is not ours

        assert "storing offsets failed" not in caplog.text
        worker._assigned = {(echo_env.in_topic, 2)}  # believed ours, but the consumer does not have it
        worker._store_offsets(consumer, [[TopicPartition(echo_env.in_topic, 2, 3)]])  # logged, not raised
        assert "storing offsets failed" in caplog.text
    finally:
        consumer.close()


def test_a_worker_that_fails_to_start_leaves_no_thread_behind(echo_env: EchoEnv,
                                                             unique: Callable[[str], str]) -> None:
    name = unique("broken")
    # librdkafka refuses this consumer config (session.timeout.ms is at most one hour), which is only
    # built after the producer, the store and the mark writer.
    settings = echo_env.settings.model_copy(update={"session_timeout_ms": 4_000_000})
    worker = Worker(make_echo_service(name).bind(echo_env.catalog), settings)
    with pytest.raises(KafkaException):
        worker.run()
    # run() closed what it built: the mark writer's thread was joined before run() returned.
    assert not [t for t in threading.enumerate() if t.name == f"choreo-marks-{name}"]


def test_a_lost_acknowledgement_outside_a_batch_re_runs_the_batches_it_covered(
        echo_env: EchoEnv, unique: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches that are not due yet are settled later by the loop (once idle, or once their outputs are
    acknowledged); if that flush fails, every batch it covered is handled again, never dropped.

    Fault injection: the worker's first flush with batches to settle reports a failure although the
    broker took the records (a lost acknowledgement), as a delivery timeout in a broker outage would.
    Batches of 5 records, never due by count or age: 20 events make 4 full batches, all settled by the loop.
    """
    real_flush = ReliableProducer.flush
    failing: list[ReliableProducer] = []  # the worker's producer, once known
    failed_in: list[set[str]] = []  # the functions on the stack of the failed flush

    def flush_losing_one_ack(self: ReliableProducer, timeout_s: float = 30.0) -> None:
        real_flush(self, timeout_s)
        if failing and self is failing[0]:
            failing.clear()
            failed_in.append({frame.name for frame in traceback.extract_stack()})
            raise ProduceError("1 records failed delivery, first: injected lost acknowledgement")

    monkeypatch.setattr(ReliableProducer, "flush", flush_losing_one_ack)
    service = make_echo_service(unique("echo"))
    with running(service, echo_env, batch_size=5) as worker:
        assert worker._processor is not None
        worker._processor.acks.max_batches, worker._processor.acks.max_age_s = 1000, 3600.0
        failing.append(worker._processor.producer)
        with echo_env.publisher() as publisher:
            events = [publisher.publish(Ping(key=f"k{i}", seq=i)) for i in range(20)]
        wait_until(lambda: worker.handled >= len(events), 60, message="every event handled after the failed flush")
        assert failed_in and "_loop" in failed_in[0] and "_run_batches" not in failed_in[0]  # the loop's settle
    store = open_store(echo_env.settings, service.name)
    try:
        assert store.seen(service.name, [e.event_id for e in events]) == {e.event_id for e in events}
    finally:
        store.close()
