"""Throughput: one choreo service process vs a raw confluent-kafka loop doing the same work, same run.

Each reads N pre-produced Avro ``Ping`` records and, per record: consume → Avro decode (registry) →
handler (Ping → Pong) → Avro encode → produce → store offsets once the batch's outputs are acked.
choreo additionally parses the envelope, stamps correlation/causation headers and deterministic ids,
validates input and output through pydantic, and looks up / marks event ids in its SQLite
idempotency store (one look-up per batch; marks written behind the consumer).

Two raw baselines run: one with confluent-kafka's own Avro serializer classes (what a hand-written
loop uses) and one that decodes/encodes with fastavro directly, as choreo's serde does, so the
second ratio shows the framework's own cost with the serde difference taken out.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from choreo.config import Settings
from choreo.context import Context
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.publisher import Publisher
from choreo.runtime.gctune import tune_gc
from choreo.runtime.worker import Worker
from choreo.schemas.catalog import SchemaCatalog
from choreo.service import Service
from tests.support.echo import PING_SCHEMA, PONG_SCHEMA, Ping, Pong, write_schemas

BATCH = 1000
SAME_SETTLE_S = 0.001  # on_batch calls closer than this come from one settle (a batch takes ~30 ms)
BATCH_WAIT_S = 0.01  # the Worker's default; every runner waits for a batch exactly as long
PARTITIONS = 8  # of make_topics' input and output topics
# Runner key (BENCH_ORDER, bench.runner) → the name its Results carry, which the tables print and
# bench/__main__.py's ratios look up. The frameworks' apps run only if their venvs exist (bench/frameworks.py).
NAMES = {"official": "raw loop, official serde", "fastavro": "raw loop, fastavro serde", "choreo": "choreo service",
         "choreo-untracked": "choreo service without task records",  # what the task records cost
         "quix": "Quix Streams app", "faststream": "FastStream app", "faust": "faust app"}
RUNNERS = tuple(NAMES)  # one round's order


@dataclass
class Result:
    """One timed run. ``cpu_seconds``: CPU time of the runner's whole process over the same window
    (every thread: librdkafka's, the mark writer's), which the box's noise moves far less than
    wall-clock time."""

    name: str
    events: int
    seconds: float
    cpu_seconds: float

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1e6

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def make_topics(settings: Settings, prefix: str) -> tuple[str, str, SchemaCatalog]:
    """Fresh, empty PARTITIONS-partition input and output topics with their Ping/Pong schemas."""
    suffix = uuid.uuid4().hex[:6]
    in_topic, out_topic = f"{prefix}-in-{suffix}", f"{prefix}-out-{suffix}"
    write_schemas(settings.schemas_dir, in_topic, out_topic)
    ensure_topics(settings.librdkafka(), [TopicSpec(in_topic, PARTITIONS), TopicSpec(out_topic, PARTITIONS)])
    return in_topic, out_topic, SchemaCatalog.load(settings.schemas_dir)


def _prepare(settings: Settings, count: int) -> tuple[str, str]:
    """make_topics, then ``count`` Pings produced into the input topic."""
    in_topic, out_topic, _ = make_topics(settings, "bench")
    with Publisher.from_settings(settings, source="bench", **{"linger.ms": 20}) as publisher:
        for i in range(count):
            publisher.publish(Ping(key=f"k{i % 1000}", seq=i))
    return in_topic, out_topic


class _FastavroSerde:
    """The raw loop's second serde: fastavro plus the official registry client, no rule machinery.

    The same shortcut choreo's serde takes, so the second baseline isolates what the framework adds.
    """

    def __init__(self, registry: SchemaRegistryClient, out_topic: str) -> None:
        self.registry = registry
        self.reader = parse_schema(PING_SCHEMA)
        self.writer = parse_schema(PONG_SCHEMA)
        self.writers: dict[int, Any] = {}
        subject = f"{out_topic}-{PONG_SCHEMA['namespace']}.{PONG_SCHEMA['name']}"
        schema_id = registry.register_schema(subject, Schema(json.dumps(PONG_SCHEMA), "AVRO"))
        self.header = b"\x00" + schema_id.to_bytes(4, "big")

    def decode(self, value: bytes, _ctx: object) -> dict[str, Any]:
        schema_id = int.from_bytes(value[1:5], "big")
        writer = self.writers.get(schema_id)
        if writer is None:
            writer = self.writers[schema_id] = parse_schema(
                json.loads(self.registry.get_schema(schema_id).schema_str))
        return schemaless_reader(io.BytesIO(value[5:]), writer, self.reader)  # type: ignore[return-value]

    def encode(self, record: dict[str, Any], _ctx: object) -> bytes:
        buffer = io.BytesIO()
        buffer.write(self.header)
        schemaless_writer(buffer, self.writer, record)
        return buffer.getvalue()


def run_raw(settings: Settings, in_topic: str, out_topic: str, count: int, serde: str) -> Result:
    """The baseline: a hand-rolled confluent-kafka loop.

    ``serde="official"`` uses confluent-kafka's AvroSerializer/AvroDeserializer, as a team writing the
    loop by hand would; ``serde="fastavro"`` decodes and encodes the way choreo does (see _FastavroSerde).
    """
    registry = SchemaRegistryClient({"url": settings.schema_registry_url})
    if serde == "official":
        decode: Callable[[bytes, Any], Any] = AvroDeserializer(registry, json.dumps(PING_SCHEMA))
        encode: Callable[[Any, Any], Any] = AvroSerializer(
            registry, json.dumps(PONG_SCHEMA), conf={"subject.name.strategy": topic_record_subject_name_strategy})
    else:
        fast = _FastavroSerde(registry, out_topic)
        decode, encode = fast.decode, fast.encode
    consumer = Consumer(settings.librdkafka(**{
        "group.id": f"raw-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest",
        "enable.auto.offset.store": False, "session.timeout.ms": 6000,
        "fetch.wait.max.ms": settings.fetch_wait_max_ms}))
    producer = Producer(settings.librdkafka(**{"enable.idempotence": True, "acks": "all", "linger.ms": 5,
                                               "partitioner": "murmur2_random", "compression.type": "lz4"}))
    in_ctx, out_ctx = SerializationContext(in_topic, MessageField.VALUE), SerializationContext(
        out_topic, MessageField.VALUE)
    consumer.subscribe([in_topic])
    done, first, started, cpu_started = 0, 0, 0.0, 0.0
    while done < count:
        messages = consumer.consume(BATCH, BATCH_WAIT_S)
        if not messages:
            continue
        last: dict[int, int] = {}
        for message in messages:
            ping = decode(message.value(), in_ctx)
            pong = {"key": ping["key"], "seq": ping["seq"]}
            producer.produce(out_topic, key=message.key(), value=encode(pong, out_ctx),
                             headers=message.headers())
            last[message.partition()] = message.offset()
        producer.flush()  # no timeout: returns once every output has its delivery report
        consumer.store_offsets(offsets=[TopicPartition(in_topic, p, o + 1) for p, o in last.items()])
        done += len(messages)
        if not first:  # like choreo's, the clock starts once the first batch is done
            first, started, cpu_started = done, time.perf_counter(), time.process_time()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    consumer.close()
    return Result(NAMES[serde], done - first, elapsed, cpu)


def run_choreo(settings: Settings, catalog: SchemaCatalog, count: int, name: str = NAMES["choreo"]) -> Result:
    service = Service(f"bench-{uuid.uuid4().hex[:6]}")

    @service.handler(Ping)
    def echo(ping: Ping, _ctx: Context) -> Pong:  # the raw loops' handler: Ping → Pong
        return Pong(key=ping.key, seq=ping.seq)

    settles: list[list[float]] = []  # [wall clock, CPU clock, handled] after each settle
    finished = threading.Event()

    def on_batch(_outcome: object) -> None:
        # Runs on the worker thread: no polling thread competes for the GIL while we measure. One
        # settle counts up to five batches back to back (group flush): calls microseconds apart belong
        # to one settle, and all its batches finished at its first call.
        now = time.perf_counter()
        if settles and now - settles[-1][0] < SAME_SETTLE_S:
            settles[-1][2] = worker.handled
        else:
            settles.append([now, time.process_time(), worker.handled])
        if worker.handled >= count:
            finished.set()

    worker = Worker(service.bind(catalog), settings, batch_size=BATCH, batch_wait_s=BATCH_WAIT_S, on_batch=on_batch)
    tune_gc(settings.gc_threshold)  # as `choreo run` does before its worker starts (bench.runner: own process)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    if not finished.wait(300):
        raise TimeoutError(f"choreo handled only {worker.handled} of {count} events")
    worker.stop()
    thread.join(30)
    # Like the raw loop's, the clock starts once the first settle is done; it stops at the settle that
    # completed the count, and only what settled in between is counted.
    (start, cpu_start, first), (end, cpu_end, last) = settles[0], next(s for s in settles if s[2] >= count)
    return Result(name, int(last - first), end - start, cpu_end - cpu_start)


def throughput(bootstrap: str, registry_url: str, count: int, rounds: int) -> list[Result]:
    """Each runner ``rounds`` times, interleaved (so warm-up and noise hit every runner alike), each run
    in a fresh process (``bench.runner``; the other frameworks in their own venvs: ``bench.frameworks``),
    with its input produced beforehand. ``BENCH_ORDER`` (runner keys, comma-separated), if set, replaces that
    order and ``rounds``: each listed run once, in that order."""
    workdir = Path(tempfile.mkdtemp(prefix="choreo-bench-"))
    settings = Settings(bootstrap_servers=bootstrap, schema_registry_url=registry_url,
                        schemas_dir=workdir / "schemas", state_dir=workdir / "state")
    results: list[Result] = []
    order = os.environ.get("BENCH_ORDER", ",".join(RUNNERS * rounds)).split(",")
    for run, runner in enumerate(order):
        settings = settings.model_copy(update={"schemas_dir": workdir / f"schemas-{run}"})
        in_topic, out_topic = _prepare(settings, count)
        if runner in ("quix", "faststream", "faust"):
            from bench.frameworks import framework_throughput  # imports this module: import it late

            framework = framework_throughput(runner, bootstrap, registry_url, in_topic, out_topic, count)
            if framework is not None:
                results.append(framework)
        else:
            from bench.runner import measure  # imports this module: import it late

            results.append(measure(runner, settings, in_topic, out_topic, count))
    return results
