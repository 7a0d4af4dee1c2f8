"""Throughput: one choreo service process vs a raw confluent-kafka loop doing the same work, same run.

Both read N pre-produced Avro ``Ping`` records and, per record: consume → Avro decode (registry) →
handler (Ping → Pong) → Avro encode → produce → store offsets once the batch's outputs are acked.
choreo additionally parses the envelope, stamps correlation/causation headers and deterministic ids,
and looks up / marks event ids in its SQLite idempotency store (one call per batch).
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from choreo.config import Settings
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.publisher import Publisher
from choreo.runtime.worker import Worker
from choreo.schemas.catalog import SchemaCatalog
from tests.support.echo import PING_SCHEMA, PONG_SCHEMA, Ping, make_echo_service, write_schemas

BATCH = 1000


@dataclass
class Result:
    name: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def _prepare(settings: Settings, count: int) -> tuple[str, str, SchemaCatalog]:
    suffix = uuid.uuid4().hex[:6]
    in_topic, out_topic = f"bench-in-{suffix}", f"bench-out-{suffix}"
    write_schemas(settings.schemas_dir, in_topic, out_topic)
    ensure_topics(settings.librdkafka(), [TopicSpec(in_topic, 8), TopicSpec(out_topic, 8)])
    with Publisher.from_settings(settings, source="bench", **{"linger.ms": 20}) as publisher:
        for i in range(count):
            publisher.publish(Ping(key=f"k{i % 1000}", seq=i))
    return in_topic, out_topic, SchemaCatalog.load(settings.schemas_dir)


def run_raw(settings: Settings, in_topic: str, out_topic: str, count: int) -> Result:
    """The baseline: a hand-rolled confluent-kafka loop with the official Avro serde."""
    registry = SchemaRegistryClient({"url": settings.schema_registry_url})
    import json

    decode = AvroDeserializer(registry, json.dumps(PING_SCHEMA))
    encode = AvroSerializer(registry, json.dumps(PONG_SCHEMA),
                            conf={"subject.name.strategy": topic_record_subject_name_strategy})
    consumer = Consumer(settings.librdkafka(**{
        "group.id": f"raw-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest",
        "enable.auto.offset.store": False, "session.timeout.ms": 6000,
        "fetch.wait.max.ms": settings.fetch_wait_max_ms}))
    producer = Producer(settings.librdkafka(**{"enable.idempotence": True, "acks": "all", "linger.ms": 5,
                                               "partitioner": "murmur2_random", "compression.type": "lz4"}))
    in_ctx, out_ctx = SerializationContext(in_topic, MessageField.VALUE), SerializationContext(
        out_topic, MessageField.VALUE)
    consumer.subscribe([in_topic])
    done, first, started = 0, 0, 0.0
    while done < count:
        messages = consumer.consume(BATCH, 0.5)
        if not messages:
            continue
        last: dict[int, int] = {}
        for message in messages:
            ping = decode(message.value(), in_ctx)
            pong = {"key": ping["key"], "seq": ping["seq"]}
            producer.produce(out_topic, key=message.key(), value=encode(pong, out_ctx),
                             headers=message.headers())
            last[message.partition()] = message.offset()
        producer.flush()
        consumer.store_offsets(offsets=[TopicPartition(in_topic, p, o + 1) for p, o in last.items()])
        done += len(messages)
        if not first:  # like choreo's, the clock starts once the first batch is done
            first, started = done, time.perf_counter()
    elapsed = time.perf_counter() - started
    consumer.close()
    return Result("raw confluent-kafka loop", done - first, elapsed)


def run_choreo(settings: Settings, catalog: SchemaCatalog, count: int) -> Result:
    service = make_echo_service(f"bench-{uuid.uuid4().hex[:6]}")
    marks: dict[str, float] = {}
    finished = threading.Event()

    def on_batch(_outcome: object) -> None:
        # Runs on the worker thread: no polling thread competes for the GIL while we measure.
        if "start" not in marks:  # like the raw loop's, the clock starts once the first batch is done
            marks["start"], marks["first"] = time.perf_counter(), worker.handled
        if worker.handled >= count:
            marks["end"] = time.perf_counter()
            finished.set()

    worker = Worker(service.bind(catalog), settings, batch_size=BATCH, on_batch=on_batch)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    if not finished.wait(300):
        raise TimeoutError(f"choreo handled only {worker.handled} of {count} events")
    elapsed = marks["end"] - marks["start"]
    first = int(marks["first"])
    worker.stop()
    thread.join(30)
    return Result("choreo service", worker.handled - first, elapsed)


def throughput(bootstrap: str, registry_url: str, count: int) -> list[Result]:
    workdir = Path(tempfile.mkdtemp(prefix="choreo-bench-"))
    settings = Settings(bootstrap_servers=bootstrap, schema_registry_url=registry_url,
                        schemas_dir=workdir / "schemas", state_dir=workdir / "state")
    results: list[Result] = []
    import os
    order = os.environ.get("BENCH_ORDER", "raw,choreo,raw,choreo").split(",")
    for run, runner in enumerate(order):  # interleaved: warm-up shows up
        settings = settings.model_copy(update={"schemas_dir": workdir / f"schemas-{run}"})
        in_topic, out_topic, catalog = _prepare(settings, count)
        if runner == "raw":
            results.append(run_raw(settings, in_topic, out_topic, count))
        else:
            results.append(run_choreo(settings, catalog, count))
    return results
