"""Worker edge cases with real clients: offsets of partitions no longer ours, a start that fails half way."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from choreo.runtime.worker import Worker
from tests.integration.runtime.conftest import EchoEnv
from tests.support.echo import make_echo_service


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
