"""Registry latency: register and look-up round trips against `choreo registry` on the embedded broker.

Usage: python -m bench.registry_latency [--calls N]

Four runs of N calls each, one at a time (latency, not throughput), every one over HTTP keep-alive:

* register (new)   — official ``SchemaRegistryClient.register_schema``, N distinct schemas under N subjects:
                     every call is a compatibility check plus a Kafka write acknowledged before the answer.
* register (again) — the same N schemas through a *new* client (empty cache): the server's idempotent path.
* lookup           — raw httpx ``POST /subjects/{s}`` (what ``lookup_schema`` sends; raw so no client cache).
* schema by id     — raw httpx ``GET /schemas/ids/{id}`` (what a deserializer sends on a cache miss).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from rich.console import Console
from rich.table import Table

from choreo.kafka.embedded import EmbeddedBroker, free_port
from choreo.testing.fixtures import start_registry

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass
class Timing:
    name: str
    seconds: list[float]

    def percentile(self, p: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.seconds)


def _timed(name: str, calls: list[Callable[[], object]]) -> Timing:
    seconds = []
    for call in calls:
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return Timing(name, seconds)


def _schema(i: int) -> str:
    return json.dumps({"type": "record", "name": f"Event{i}", "namespace": "bench.registry", "fields": [
        {"name": "id", "type": "string"}, {"name": "amount", "type": "long", "default": 0},
        {"name": "note", "type": ["null", "string"], "default": None}]})


def registry_latency(url: str, calls: int = 1000) -> list[Timing]:
    """Run the four timed series against the registry at ``url``; each series makes ``calls`` calls."""
    run = uuid.uuid4().hex[:6]
    subjects = [f"bench-{run}-{i}-bench.registry.Event{i}" for i in range(calls)]
    schemas = [Schema(_schema(i), "AVRO") for i in range(calls)]
    pairs = list(zip(subjects, schemas, strict=True))
    client = SchemaRegistryClient({"url": url})
    register = _timed("register (new)", [
        lambda s=s, x=x: client.register_schema(s, x) for s, x in pairs])
    again_client = SchemaRegistryClient({"url": url})
    again = _timed("register (again)", [
        lambda s=s, x=x: again_client.register_schema(s, x) for s, x in pairs])
    with httpx.Client(base_url=url, headers={"Content-Type": MEDIA_TYPE}) as http:
        def lookup(subject: str, text: str) -> int:
            response = http.post(f"/subjects/{subject}", json={"schema": text})
            response.raise_for_status()
            return int(response.json()["id"])
        ids: list[int] = []
        looked_up = _timed("lookup", [
            lambda s=s, x=x: ids.append(lookup(s, x.schema_str)) for s, x in pairs])
        by_id = _timed("schema by id", [
            lambda i=i: http.get(f"/schemas/ids/{i}").raise_for_status() for i in ids])
    return [register, again, looked_up, by_id]


def main() -> None:
    parser = argparse.ArgumentParser(description="choreo registry latency")
    parser.add_argument("--calls", type=int, default=1000, help="calls per series")
    args = parser.parse_args()
    console = Console()
    logs = Path(tempfile.mkdtemp(prefix="choreo-bench-registry-"))
    with EmbeddedBroker("127.0.0.1", free_port(), log_path=logs / "tansu.log") as broker:
        console.print(f"broker (Tansu) started in {broker.startup_seconds:.2f}s "
                      f"at {broker.bootstrap_servers}")
        started = time.monotonic()
        topic = f"_schemas-bench-{uuid.uuid4().hex[:6]}"
        registry, url = start_registry(broker.bootstrap_servers, logs, topic=topic)
        console.print(f"registry answering in {time.monotonic() - started:.2f}s at {url} "
                      "(process start and imports included)")
        try:
            timings = registry_latency(url, args.calls)
        finally:
            registry.terminate()
    table = Table(title=f"choreo registry latency, {args.calls} sequential calls per row")
    for column in ("series", "calls", "p50 ms", "p99 ms", "mean ms", "max ms"):
        table.add_column(column, justify="right")
    for timing in timings:
        table.add_row(timing.name, str(len(timing.seconds)), f"{timing.percentile(50) * 1e3:.2f}",
                      f"{timing.percentile(99) * 1e3:.2f}", f"{timing.mean * 1e3:.2f}",
                      f"{max(timing.seconds) * 1e3:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
