"""Plain confluent-kafka helpers for tests: read a topic back, produce raw bytes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from choreo.config import Settings
from choreo.errors import InfrastructureError
from choreo.kafka.admin import partition_count
from choreo.kafka.reading import read_to_end
from choreo.testing.processes import wait_until


def read_topic(kafka_config: dict[str, Any], topic: str, *, until: Callable[[list[Message]], bool],
               timeout_s: float = 60.0) -> list[Message]:
    """Read ``topic`` from the start until ``until(messages)`` holds.

    Partitions are assigned directly (no group join, ~3 s on Tansu, nothing committed); metadata is
    fetched first so the assignment does not wait for leader discovery. A topic that does not exist
    yet (a service creates its retry topics after its HTTP server answers) is waited for.
    """
    consumer = Consumer({**kafka_config, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    deadline = time.monotonic() + timeout_s
    messages: list[Message] = []
    try:
        partitions: list[int] = []

        def created() -> bool:
            partitions[:] = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            return bool(partitions)

        wait_until(created, timeout_s, interval_s=0.1, message=f"topic {topic} created")
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while not until(messages):
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {len(messages)} records from {topic}; condition not met")
            for message in consumer.consume(1000, 0.2):
                if message.error() is None:
                    messages.append(message)
    finally:
        consumer.close()
    return messages


def read_all(settings: Settings, topic: str) -> list[Message]:
    """Everything in ``topic`` right now (EOF on every partition), duplicates included.

    InfrastructureError if ``topic`` does not exist."""
    partitions = partition_count(settings.librdkafka(), topic)
    if partitions is None:
        raise InfrastructureError(f"topic {topic!r} does not exist")
    return read_to_end(settings, topic, partitions)


def count_at_least(n: int) -> Callable[[list[Message]], bool]:
    return lambda messages: len(messages) >= n


def headers_of(message: Message) -> dict[str, str]:
    return {k: v.decode() for k, v in (message.headers() or []) if v is not None}


def produce_raw(kafka_config: dict[str, Any], topic: str, records: list[tuple[bytes | None, bytes | None,
                list[tuple[str, bytes]]]]) -> None:
    """Produce (key, value, headers) records as they are, and wait for acks."""
    producer = Producer({**kafka_config, "partitioner": "murmur2_random", "linger.ms": 5})
    for key, value, headers in records:
        producer.produce(topic, key=key, value=value, headers=headers)
    assert producer.flush(30) == 0
