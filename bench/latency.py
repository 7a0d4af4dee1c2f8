"""End-to-end latency: one choreo service vs the raw confluent-kafka loops, same load, same run.

What is measured, per event: the Pong's record timestamp (CreateTime, stamped by the runner's producer
when it calls ``produce()``) minus the wall-clock time at which this module published the Ping. So a
figure covers Ping produce → broker → fetch → decode → handler → encode → the Pong's ``produce()`` call,
but not the Pong's own trip to the broker. Both clocks are this machine's wall clock (``time.time()``
and librdkafka's), but record timestamps are whole milliseconds: sub-millisecond differences are lost
and figures read on average ~0.5 ms low.

How: for each runner of bench/throughput.py ("official", "fastavro", "choreo"), on fresh topics, the
runner runs in its own process (``bench.runner``, as for throughput: in one process with the publisher,
the two would trade the GIL and every runner's latency would include waits for it) with
``count = rate * seconds`` while this process publishes Pings
through choreo's ``Publisher`` (real CloudEvents headers; one ``linger.ms=0`` producer for every
runner), paced in bursts every ``TICK_S``. The consumer group join takes ~3 s on Tansu (SPEC §1), and
records waiting for it would measure the join, not the runtime. So first a trickle of warm-up Pings
(one per ``TRICKLE_S``) is published until the first Pong appears on the output topic (watched by an
assigned, groupless consumer, closed before the measurement), then ``count`` Pings at ``rate``: the
measurement covers ``seconds`` of post-join time. Only Pings published after the first Pong's timestamp
+ ``SETTLE_MS`` count. The runner stops once it has handled ``count`` records, warm-up ones included,
so the last few measured Pings (about as many as the warm-up trickle) may get no Pong: they are left out.

The runners consume in batches (up to 1000 records; ``consume()`` returns after ``BATCH_WAIT_S``,
10 ms, with whatever arrived) and flush their producer once per batch, so at moderate rates a record
waits at most ~10 ms for its batch, plus the broker's fetch wait (``fetch.wait.max.ms``, 10 ms).
"""

from __future__ import annotations

import io
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro import parse_schema, schemaless_reader

from bench.runner import ROOT, runner_command
from bench.throughput import NAMES, PARTITIONS, make_topics
from choreo.config import Settings
from choreo.kafka.producer import ReliableProducer
from choreo.kafka.reading import read_to_end
from choreo.publisher import Publisher
from choreo.serde.avro import AvroEventSerde
from tests.support.echo import PONG_SCHEMA, Ping

TICK_S = 0.005  # publish whatever is due every 5 ms
TRICKLE_S = 0.05  # warm-up: one Ping per 50 ms until the runner has joined its group
SETTLE_MS = 200.0  # Pings published before the first Pong's timestamp + this are not counted
JOIN_TIMEOUT_S = 60.0


@dataclass
class LatencyResult:
    name: str
    count: int  # events measured
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


class _Pinger:
    """Publishes Pings with consecutive seqs and remembers when each was published (epoch ms)."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.sent_ms: dict[int, float] = {}

    def send(self, n: int) -> None:
        for _ in range(n):
            seq = len(self.sent_ms)
            self.sent_ms[seq] = time.time() * 1000
            self.publisher.publish(Ping(key=f"k{seq % 1000}", seq=seq))
        self.publisher.producer.poll()

    def warm_up(self, settings: Settings, out_topic: str, alive: Callable[[], bool]) -> None:
        """Trickle Pings until the first Pong shows up on ``out_topic``, i.e. the runner has joined."""
        watcher = Consumer(settings.librdkafka(**{"group.id": f"lat-watch-{uuid.uuid4().hex[:6]}",
                                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10}))
        try:
            watcher.list_topics(out_topic, timeout=10)  # leaders known before assign()
            watcher.assign([TopicPartition(out_topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
            deadline = time.monotonic() + JOIN_TIMEOUT_S
            while not any(m.error() is None for m in watcher.consume(100, TRICKLE_S)):
                if time.monotonic() > deadline or not alive():
                    raise TimeoutError(f"no Pong on {out_topic} after {len(self.sent_ms)} warm-up Pings")
                self.send(1)
        finally:
            watcher.close()

    def steady(self, count: int, rate: int) -> None:
        """Publish ``count`` Pings at ``rate`` per second, in a burst every TICK_S."""
        start, sent = time.monotonic(), 0
        while sent < count:
            due = min(count, int((time.monotonic() - start) * rate) + 1)
            self.send(due - sent)
            sent = due
            if sent < count:
                time.sleep(TICK_S)


def _percentiles(name: str, latencies: list[float]) -> LatencyResult:
    if len(latencies) < 100:
        raise RuntimeError(f"{name}: only {len(latencies)} events measured")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return LatencyResult(name, len(latencies), cuts[49], cuts[89], cuts[98], max(latencies))


def _measure(settings: Settings, producer: ReliableProducer, serde: AvroEventSerde, runner: str,
             rate: int, seconds: float) -> LatencyResult:
    in_topic, out_topic, catalog = make_topics(settings, "lat")
    count = int(rate * seconds)
    with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: a full pipe would stall the runner
        process = subprocess.Popen(runner_command(runner, settings, in_topic, out_topic, count),  # noqa: S603
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            pinger = _Pinger(Publisher(catalog, producer, serde, source="bench"))
            pinger.warm_up(settings, out_topic, lambda: process.poll() is None)
            time.sleep(SETTLE_MS / 1000)
            pinger.steady(count, rate)
            producer.flush()
            process.wait(JOIN_TIMEOUT_S + seconds)
        except (TimeoutError, subprocess.TimeoutExpired):
            if process.poll() is None:
                raise TimeoutError(f"{runner} did not finish {count} events") from None
            if process.returncode == 0:
                raise  # it finished, yet no Pong was seen: a measurement problem, not the runner's
        finally:
            if process.poll() is None:  # whatever went wrong here, leave no runner spinning behind
                process.kill()
                process.wait()
        if process.returncode != 0:  # it died: its error is the one to report
            errors.seek(0)
            raise RuntimeError(f"{runner} exited with {process.returncode}: {errors.read()[-2000:]}")

    reader = parse_schema(PONG_SCHEMA)  # every runner writes this schema (Confluent framing: 5-byte header)
    pongs: dict[int, int] = {}  # seq → Pong timestamp (ms); the first Pong wins should a seq appear twice
    for message in read_to_end(settings, out_topic, PARTITIONS):
        seq = schemaless_reader(io.BytesIO(message.value()[5:]), reader, reader)["seq"]  # type: ignore[index]
        pongs.setdefault(seq, message.timestamp()[1])
    since = min(pongs.values()) + SETTLE_MS
    latencies = [pong_ms - pinger.sent_ms[seq] for seq, pong_ms in pongs.items() if pinger.sent_ms[seq] >= since]
    return _percentiles(NAMES[runner], latencies)


def latency(bootstrap: str, registry_url: str, rate: int, seconds: float) -> list[LatencyResult]:
    """Latency percentiles of each runner under ``rate`` Pings/s for ``seconds`` after its group join."""
    workdir = Path(tempfile.mkdtemp(prefix="choreo-latency-"))
    settings = Settings(bootstrap_servers=bootstrap, schema_registry_url=registry_url,
                        schemas_dir=workdir / "schemas", state_dir=workdir / "state")
    producer = ReliableProducer(settings.librdkafka(**{"linger.ms": 0}))
    serde = AvroEventSerde(SchemaRegistryClient(settings.registry_client_config()))
    results = []
    try:
        for runner in ("official", "fastavro", "choreo"):
            runner_settings = settings.model_copy(update={"schemas_dir": workdir / f"schemas-{runner}"})
            results.append(_measure(runner_settings, producer, serde, runner, rate, seconds))
    finally:
        producer.close()
    return results
