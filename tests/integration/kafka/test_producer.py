"""ReliableProducer against the real broker: acknowledged means acknowledged, failures surface at flush."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from choreo.config import Settings
from choreo.errors import ProduceError
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.kafka.embedded import free_port
from choreo.kafka.producer import OutgoingRecord, ReliableProducer
from tests.support.kafka import read_all, read_topic


def _settings(kafka_config: dict[str, Any]) -> Settings:
    return Settings(bootstrap_servers=kafka_config["bootstrap.servers"])


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
    # Read to the end of the topic, not just to the first record: the refused one must not follow it.
    assert [r.value() for r in read_all(_settings(kafka_config), topic)] == [b"small"]


def test_an_undelivered_record_fails_the_flush() -> None:
    """The delivery callback reports the timeout: flush raises instead of calling the record sent."""

    producer = ReliableProducer({"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": 1000})
    producer.produce(OutgoingRecord("nowhere", b"k", b"v", []))
    with pytest.raises(ProduceError, match="failed delivery|not acknowledged"):
        producer.flush(10)


def test_produce_all_queues_records_in_order_with_key_and_value_in_place(kafka_config: dict[str, Any],
                                                                         unique: Callable[[str], str]) -> None:
    topic = unique("all")
    ensure_topics(kafka_config, [TopicSpec(topic, 1)])
    producer = ReliableProducer(kafka_config)
    producer.produce_all([OutgoingRecord(topic, f"k{i}".encode(), f"v{i}".encode(), [("n", str(i).encode())])
                          for i in range(20)])
    producer.flush()
    records = read_topic(kafka_config, topic, until=lambda got: len(got) >= 20)
    assert [(r.key(), r.value(), r.headers()) for r in records] == [
        (f"k{i}".encode(), f"v{i}".encode(), [("n", str(i).encode())]) for i in range(20)]


def test_produce_all_refuses_a_record_librdkafka_rejects_and_keeps_the_ones_before(
        kafka_config: dict[str, Any], unique: Callable[[str], str]) -> None:
    topic = unique("refused-all")
    ensure_topics(kafka_config, [TopicSpec(topic, 1)])
    producer = ReliableProducer({**kafka_config, "message.max.bytes": 1000})
    records = [OutgoingRecord(topic, b"a", b"small", []), OutgoingRecord(topic, b"b", b"x" * 5000, []),
               OutgoingRecord(topic, b"c", b"small", [])]
    with pytest.raises(ProduceError, match=f"cannot produce to {topic}") as refused:
        producer.produce_all(records)
    assert refused.value.topic == topic
    producer.flush(10)  # the record before it is delivered; the one after was never queued
    # Read to the end of the topic, not just to the first record: neither later record may follow it.
    assert [r.key() for r in read_all(_settings(kafka_config), topic)] == [b"a"]


def test_produce_all_waits_for_room_in_a_full_local_queue() -> None:
    """The queue holds one record; the second waits until the first leaves (here: times out)."""
    producer = ReliableProducer({"bootstrap.servers": f"127.0.0.1:{free_port()}",
                                 "queue.buffering.max.messages": 1, "message.timeout.ms": 300})
    started = time.monotonic()
    producer.produce_all([OutgoingRecord("t", b"a", b"1", []), OutgoingRecord("t", b"b", b"2", [])])
    assert time.monotonic() - started >= 0.25  # BufferError was not raised: it waited for the room
    with pytest.raises(ProduceError, match="failed delivery"):
        producer.flush(10)  # nothing is reported sent that the broker did not acknowledge


def test_a_closed_producer_is_freed_at_once_without_the_cycle_collector() -> None:
    """Its librdkafka client (and threads) go with the last reference, not at some later GC pass."""
    import gc
    import weakref

    producer = ReliableProducer({"bootstrap.servers": f"127.0.0.1:{free_port()}"})
    producer.close(0.1)
    gone = weakref.ref(producer)
    gc.disable()
    try:
        del producer
        assert gone() is None
    finally:
        gc.enable()
