"""The embedded broker starts, answers Kafka, refuses a taken port and stops cleanly."""

from __future__ import annotations

import socket
import time

import pytest
from confluent_kafka import Consumer, Producer

from choreo.errors import ConfigError
from choreo.kafka.admin import TopicSpec, ensure_topics, partition_count
from choreo.kafka.embedded import EmbeddedBroker, free_port, port_is_free


def test_round_trip_through_the_session_broker(kafka_config, unique) -> None:
    topic = unique("smoke")
    ensure_topics(kafka_config, [TopicSpec(topic, partitions=3)])
    producer = Producer({**kafka_config, "enable.idempotence": True, "acks": "all"})
    for i in range(10):
        producer.produce(topic, key=f"k{i}", value=f"v{i}".encode())
    assert producer.flush(10) == 0
    consumer = Consumer({**kafka_config, "group.id": unique("g"), "auto.offset.reset": "earliest",
                         "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    seen: set[bytes] = set()
    deadline = time.monotonic() + 30
    while len(seen) < 10 and time.monotonic() < deadline:
        for message in consumer.consume(100, 0.5):
            assert message.error() is None
            seen.add(message.value())
    consumer.close()
    assert seen == {f"v{i}".encode() for i in range(10)}


def test_ensure_topics_is_idempotent(kafka_config, unique) -> None:
    topic = unique("ensure")
    first = ensure_topics(kafka_config, [TopicSpec(topic, partitions=4)])
    second = ensure_topics(kafka_config, [TopicSpec(topic, partitions=4)])
    assert first.created == [topic]
    assert second.created == [] and second.existing == [topic]
    assert partition_count(kafka_config, topic) == 4


def test_start_refuses_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="already in use"):
            EmbeddedBroker("127.0.0.1", port).start()


def test_start_and_stop_a_second_broker() -> None:
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port).start()
    try:
        assert broker.startup_seconds is not None and broker.startup_seconds < 15
        assert not port_is_free("127.0.0.1", port)
    finally:
        broker.stop()
    assert not broker.is_running()
