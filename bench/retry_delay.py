"""Retry delay accuracy: how late a retried event is handled compared with its due time.

Every event fails once and is retried after ``delay_s`` (no jitter); lateness = (time of attempt 2 −
time of attempt 1) − delay. The worker pauses the retry partition until the head is due and wakes up
for the earliest due time, so lateness is the fetch round trip, not a poll interval.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from choreo import Context, Service
from choreo.config import Settings
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.publisher import Publisher
from choreo.retry import RetryPolicy
from choreo.runtime.worker import Worker
from choreo.schemas.catalog import SchemaCatalog
from tests.support.echo import Ping, Pong, write_schemas


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def retry_delay_accuracy(bootstrap: str, registry_url: str, count: int = 300,
                         delay_s: float = 0.5) -> dict[str, float]:
    """p50/p99/max lateness in ms of ``count`` retried events with a ``delay_s`` policy."""
    workdir = Path(tempfile.mkdtemp(prefix="choreo-bench-retry-"))
    suffix = uuid.uuid4().hex[:6]
    in_topic, out_topic = f"retry-in-{suffix}", f"retry-out-{suffix}"
    settings = Settings(bootstrap_servers=bootstrap, schema_registry_url=registry_url,
                        schemas_dir=write_schemas(workdir / "schemas", in_topic, out_topic),
                        state_dir=workdir / "state")
    ensure_topics(settings.librdkafka(), [TopicSpec(in_topic, 8), TopicSpec(out_topic, 8)])
    first_try: dict[int, float] = {}
    lateness_ms: list[float] = []
    done = threading.Event()
    service = Service(f"bench-retry-{suffix}", retry=RetryPolicy(delays=(delay_s,), jitter=0.0))

    @service.handler(Ping)
    def fail_once(event: Ping, ctx: Context) -> Pong:
        now = time.time()
        if ctx.attempt == 1:
            first_try[event.seq] = now
            raise ConnectionError("first attempt always fails")
        lateness_ms.append((now - first_try[event.seq] - delay_s) * 1000)
        if len(lateness_ms) >= count:
            done.set()
        return Pong(key=event.key, seq=event.seq)

    worker = Worker(service.bind(SchemaCatalog.load(settings.schemas_dir)), settings)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    worker.ready.wait(60)
    with Publisher.from_settings(settings, source="bench") as publisher:
        for seq in range(count):
            publisher.publish(Ping(key=f"k{seq}", seq=seq))
            time.sleep(0.002)  # spread due times, as real failures are
    if not done.wait(120):
        raise TimeoutError(f"only {len(lateness_ms)} of {count} retries arrived")
    worker.stop()
    thread.join(30)
    return {"p50": _percentile(lateness_ms, 50), "p99": _percentile(lateness_ms, 99),
            "max": max(lateness_ms), "min": min(lateness_ms)}
