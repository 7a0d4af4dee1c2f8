"""partition_count answers without creating topics and with typed errors; read_to_end reads up to EOF."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from choreo.config import Settings
from choreo.errors import ConfigError, InfrastructureError
from choreo.kafka.admin import TopicSpec, ensure_topics, partition_count
from choreo.kafka.embedded import free_port
from choreo.kafka.reading import read_to_end
from tests.support.kafka import produce_raw


def test_partition_count_of_a_missing_topic_is_none_and_creates_nothing(kafka_config, unique) -> None:
    topic = unique("missing")
    assert partition_count(kafka_config, topic) is None
    assert topic not in AdminClient(kafka_config).list_topics(timeout=10).topics


def test_partition_count_errors_are_typed(kafka_config) -> None:
    with pytest.raises(ConfigError, match="invalid Kafka client settings"):
        partition_count({**kafka_config, "no.such.option": "1"}, "any")
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(InfrastructureError, match=f"cannot reach the broker at {nobody}"):
        partition_count({"bootstrap.servers": nobody}, "any", timeout_s=1)


def _settings(kafka_config: dict[str, Any]) -> Settings:
    return Settings(bootstrap_servers=kafka_config["bootstrap.servers"], fetch_wait_max_ms=10)


def test_read_to_end_returns_every_record_in_offset_order_per_partition(kafka_config, unique) -> None:
    topic = unique("read")
    ensure_topics(kafka_config, [TopicSpec(topic, partitions=3)])
    produce_raw(kafka_config, topic, [(f"k{i % 7}".encode(), str(i).encode(), []) for i in range(30)])

    messages = read_to_end(_settings(kafka_config), topic, partition_count(kafka_config, topic) or 0)

    assert sorted(int(m.value()) for m in messages) == list(range(30))
    for partition in range(3):
        offsets = [m.offset() for m in messages if m.partition() == partition]
        assert offsets == sorted(offsets)


def test_read_to_end_of_an_empty_topic_is_empty(kafka_config, unique) -> None:
    topic = unique("empty")
    ensure_topics(kafka_config, [TopicSpec(topic, partitions=2)])
    assert read_to_end(_settings(kafka_config), topic, 2) == []
