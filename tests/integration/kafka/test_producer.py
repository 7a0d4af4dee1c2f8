"""ReliableProducer against the real broker: acknowledged means acknowledged, failures surface at flush."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from choreo.errors import ProduceError
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.kafka.embedded import free_port
from choreo.kafka.producer import OutgoingRecord, ReliableProducer
from tests.support.kafka import read_topic


def test_flush_returns_once_every_record_is_acknowledged(kafka_config: dict[str, Any],
                                                        unique: Callable[[str], str]) -> None:
    topic = unique("acked")
    ensure_topics(kafka_config, [TopicSpec(topic, 2)])
    producer = ReliableProducer(kafka_config)
    for i in range(50):
        producer.produce(OutgoingRecord(topic, f"k{i}".encode(), f"v{i}".encode(), [("h", b"x")]))
    producer.flush()
    assert len(producer) == 0
    records = read_topic(kafka_config, topic, until=lambda got: len(got) >= 50)
    assert sorted(r.value() for r in records) == sorted(f"v{i}".encode() for i in range(50))


def test_a_record_over_the_size_limit_is_refused_at_once(kafka_config: dict[str, Any],
                                                         unique: Callable[[str], str]) -> None:
    topic = unique("refused")
    ensure_topics(kafka_config, [TopicSpec(topic, 1)])
    producer = ReliableProducer({**kafka_config, "message.max.bytes": 1000})
    producer.produce(OutgoingRecord(topic, b"ok", b"small", []))
    with pytest.raises(ProduceError, match=topic):
        producer.produce(OutgoingRecord(topic, b"big", b"x" * 5000, []))
    producer.flush(10)  # the record before it is still delivered
    assert [r.value() for r in read_topic(kafka_config, topic, until=lambda got: len(got) >= 1)] == [b"small"]


def test_an_undelivered_record_fails_the_flush() -> None:
    """The delivery callback reports the timeout: flush raises instead of calling the record sent."""

    producer = ReliableProducer({"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": 1000})
    producer.produce(OutgoingRecord("nowhere", b"k", b"v", []))
    with pytest.raises(ProduceError, match="failed delivery|not acknowledged"):
        producer.flush(10)


def test_a_closed_producer_is_freed_at_once_without_the_cycle_collector(kafka_config: dict[str, Any]) -> None:
    """Its librdkafka client (and threads) go with the last reference, not at some later GC pass."""
    import gc
    import weakref

    producer = ReliableProducer(kafka_config)
    producer.close(5)
    gone = weakref.ref(producer)
    gc.disable()
    try:
        del producer
        assert gone() is None
    finally:
        gc.enable()
