"""DLQ replay throughput: how fast `choreo dlq replay` moves dead letters back to ``<service>.retry.1``.

The DLQ is filled with ``count`` synthetic dead letters (Avro-framed value, CloudEvents and ``dlq-*``
headers, as the retry router writes them); the figure is the replay tool's own rate over one whole
:func:`choreo.retry.replay.replay` call: read the DLQ and the audit trail to the end, plan, rewrite
headers, produce, wait for every ack, record the run. No service consumes the retry topic meanwhile.

Usage: python -m bench.dlq_replay [--events N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer

from choreo.config import Settings
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.retry import headers as h
from choreo.retry.dlq import read_dead_letters
from choreo.retry.replay import ReplayPlan, replay


def _fill_dlq(settings: Settings, service: str, count: int) -> None:
    producer = Producer(settings.librdkafka(**{"linger.ms": 20, "partitioner": "murmur2_random"}))
    now = str(h.now_ms()).encode()
    for i in range(count):
        key = f"order-{i % 1000}".encode()
        value = b"\x00\x00\x00\x00\x01" + key + b"\x02\x00" + bytes(40)  # wire-format framed, ~60 bytes
        headers = [
            ("ce_specversion", b"1.0"), ("ce_id", str(uuid.uuid4()).encode()),
            ("ce_type", b"io.choreo.shop.OrderPlaced"),
            ("ce_source", b"bench"), ("ce_subject", key), ("correlation-id", str(uuid.uuid4()).encode()),
            ("retry-original-topic", b"orders"), ("retry-original-partition", b"0"),
            ("retry-original-offset", str(i).encode()), ("dlq-reason", b"retries-exhausted"),
            ("dlq-error-type", b"TimeoutError"), ("dlq-error-message", b"payments API timed out"),
            ("dlq-traceback", b"Traceback (most recent call last):\n" + bytes(600)), ("dlq-attempts", b"4"),
            ("dlq-first-failure", now), ("dlq-last-failure", now), ("dlq-service", service.encode()),
        ]
        while True:
            try:
                producer.produce(h.dlq_topic(service), key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0, "bench DLQ records not acknowledged"


@dataclass(frozen=True)
class ReplayResult:
    events: int
    seconds: float  # the whole replay() call
    read_and_plan_s: float  # of which: reading the DLQ and history, planning

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def send_rate(self) -> float:
        """Rewrite headers, produce, wait for acks, record the run."""
        return self.events / (self.seconds - self.read_and_plan_s)


def replay_throughput(bootstrap: str, registry_url: str, count: int) -> float:
    """Events/s of one replay run over ``count`` dead letters (end to end, audit record included)."""
    return measure_replay(bootstrap, registry_url, count).rate


def measure_replay(bootstrap: str, registry_url: str, count: int) -> ReplayResult:
    """Fill a fresh ``<service>.dlq`` with ``count`` dead letters, replay them all once, time it."""
    service = f"bench-replay-{uuid.uuid4().hex[:6]}"
    settings = Settings(bootstrap_servers=bootstrap, schema_registry_url=registry_url,
                        state_dir=Path(tempfile.mkdtemp(prefix="choreo-bench-")))
    ensure_topics(settings.librdkafka(), [TopicSpec(h.dlq_topic(service), 8), TopicSpec(h.retry_topic(service, 1), 8)])
    _fill_dlq(settings, service, count)
    assert len(read_dead_letters(settings, service)) == count  # all visible before the clock starts
    sending: list[float] = []

    def on_plan(plan: ReplayPlan) -> None:
        sending.append(time.perf_counter())

    started = time.perf_counter()
    report = replay(settings, service, on_plan=on_plan)
    seconds = time.perf_counter() - started
    assert report.ok and len(report.replayed) == count, report.run
    return ReplayResult(count, seconds, sending[0] - started)


def main() -> None:
    from choreo.kafka.embedded import EmbeddedBroker, free_port
    from choreo.testing.fixtures import start_registry

    parser = argparse.ArgumentParser(description="choreo DLQ replay throughput")
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="choreo-bench-logs-"))
    with EmbeddedBroker("127.0.0.1", free_port(), log_path=logs / "tansu.log") as broker:
        registry, url = start_registry(broker.bootstrap_servers, logs)
        try:
            result = measure_replay(broker.bootstrap_servers, url, args.events)
        finally:
            registry.terminate()
    print(f"replayed {result.events} dead letters in {result.seconds:.2f}s: {result.rate:,.0f} events/s end to end "
          f"(reading the DLQ + planning {result.read_and_plan_s:.2f}s; sending {result.send_rate:,.0f} events/s)")


if __name__ == "__main__":
    main()
