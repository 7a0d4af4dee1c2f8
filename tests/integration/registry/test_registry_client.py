"""The official confluent-kafka client and Avro serdes work unchanged against `choreo registry`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from choreo.kafka.admin import TopicSpec, ensure_topics

pytestmark = pytest.mark.timeout(60)

ID = {"name": "order_id", "type": "string"}
QTY = {"name": "qty", "type": "int", "default": 1}


def consume_all(kafka_config: dict, topic: str, count: int, timeout_s: float = 20.0) -> list:
    """Read ``count`` records of partition 0 from the start (assign: no group join to wait for)."""
    consumer = Consumer({**kafka_config, "group.id": f"{topic}-reader", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 10})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    messages: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < count and time.monotonic() < deadline:
            for message in consumer.consume(count, 0.2):
                assert message.error() is None, message.error()
                messages.append(message)
    finally:
        consumer.close()
    assert len(messages) == count, f"consumed {len(messages)} of {count}"
    return messages


def test_avro_serde_round_trip_with_topic_record_subjects(
        schema_registry_url: str, kafka_config: dict, unique: Callable[[str], str],
        avro_record: Callable[..., str]) -> None:
    topic = unique("orders")
    ensure_topics(kafka_config, [TopicSpec(topic, partitions=1)])
    producer_client = SchemaRegistryClient({"url": schema_registry_url})
    conf = {"subject.name.strategy": topic_record_subject_name_strategy}
    placed = AvroSerializer(producer_client, avro_record("OrderPlaced", ID, QTY), conf=conf)
    cancelled = AvroSerializer(producer_client, avro_record("OrderCancelled", ID), conf=conf)
    ctx = SerializationContext(topic, MessageField.VALUE)
    events = [(placed, {"order_id": "o1", "qty": 2}), (cancelled, {"order_id": "o1"}),
              (placed, {"order_id": "o2", "qty": 5}), (placed, {"order_id": "o3", "qty": 1})]

    producer = Producer(kafka_config)
    for serializer, value in events:
        producer.produce(topic, key=value["order_id"], value=serializer(value, ctx))
    assert producer.flush(10) == 0

    # A fresh client: the consumer side knows nothing but the ids in the records.
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": schema_registry_url}))
    messages = consume_all(kafka_config, topic, len(events))
    assert [deserializer(m.value(), ctx) for m in messages] == [value for _, value in events]

    ids = {m.value()[0:1] + m.value()[1:5] for m in messages}
    assert len(ids) == 2 and all(i[0] == 0 for i in ids)  # Confluent framing: magic 0, 4-byte id
    subjects = producer_client.get_subjects()
    assert {f"{topic}-choreo.test.OrderPlaced", f"{topic}-choreo.test.OrderCancelled"} <= set(subjects)


def test_registry_api_through_the_client(schema_registry_url: str, unique: Callable[[str], str],
                                         avro_record: Callable[..., str]) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    orders, payments = unique("orders") + "-choreo.test.Order", unique("payments") + "-choreo.test.Order"
    v1 = Schema(avro_record("Order", ID), "AVRO")
    v1_reformatted = Schema(json.dumps(json.loads(v1.schema_str), indent=2, sort_keys=True), "AVRO")
    v2 = Schema(avro_record("Order", ID, QTY), "AVRO")

    first = client.register_schema(orders, v1)
    assert client.register_schema(orders, v1_reformatted) == first          # same schema, same id
    assert client.register_schema(payments, v1) == first                    # global id per schema
    second = client.register_schema(orders, v2)
    assert second != first

    fresh = SchemaRegistryClient({"url": schema_registry_url})  # nothing cached
    assert fresh.register_schema(orders, v1) == first
    looked_up = fresh.lookup_schema(orders, v1_reformatted)
    assert (looked_up.schema_id, looked_up.version) == (first, 1)
    assert fresh.lookup_schema(payments, v1).version == 1
    assert fresh.get_versions(orders) == [1, 2]
    latest = fresh.get_latest_version(orders)
    assert (latest.version, latest.schema_id) == (2, second)
    assert fresh.get_version(orders, 1).schema_id == first
    assert json.loads(fresh.get_schema(second).schema_str) == json.loads(latest.schema.schema_str)
    assert sorted(fresh.get_subjects_by_schema_id(first)) == sorted([orders, payments])
    assert {(v.subject, v.version) for v in fresh.get_schema_versions(first)} == {(orders, 1), (payments, 1)}
    assert fresh.get_schema_types() == ["AVRO"]

    assert fresh.set_compatibility(orders, "FULL") == {"compatibility": "FULL"}
    assert fresh.get_compatibility(orders) == "FULL"
    assert fresh.get_config(orders).compatibility_level.value == "FULL"
    breaking = Schema(avro_record("Order", ID, QTY, {"name": "x", "type": "int"}), "AVRO")
    assert fresh.test_compatibility(orders, breaking, verbose=True) is False
    assert fresh.test_compatibility_all_versions(orders, v1) is True
    assert fresh.get_mode(orders) == "READWRITE"

    assert fresh.delete_version(orders, 2) == 2
    assert fresh.get_versions(orders) == [1]
    assert fresh.delete_subject(orders) == [1]
    assert fresh.delete_subject(orders, permanent=True) == [1, 2]
    with pytest.raises(SchemaRegistryError) as missing:
        fresh.get_versions(orders)
    assert (missing.value.http_status_code, missing.value.error_code) == (404, 40401)
    assert fresh.get_schema(first).schema_str  # still used by `payments`
    with pytest.raises(SchemaRegistryError) as gone:
        SchemaRegistryClient({"url": schema_registry_url}).get_schema(second)  # only `orders` v2 used it
    assert gone.value.error_code == 40403
