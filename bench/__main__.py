"""`make bench`: start the embedded stack, run every benchmark, print figures and ratios.

Usage: python -m bench [--events N] [--only throughput,retry,replay,registry]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.registry_latency import registry_latency
from bench.retry_delay import retry_delay_accuracy
from bench.throughput import throughput
from choreo.kafka.embedded import EmbeddedBroker, free_port
from choreo.testing.fixtures import start_registry

console = Console()
ALL = ("throughput", "retry", "replay", "registry")


def _throughput(bootstrap: str, url: str, events: int) -> None:
    results = throughput(bootstrap, url, events)
    table = Table(title=f"consume → decode → handle → encode → produce → store offset ({events} events)")
    for column in ("run", "events", "seconds", "events/s"):
        table.add_column(column, justify="right")
    for result in results:
        table.add_row(result.name, str(result.events), f"{result.seconds:.2f}", f"{result.rate:,.0f}")
    console.print(table)
    raw = max(r.rate for r in results if r.name.startswith("raw"))
    ours = max(r.rate for r in results if r.name.startswith("choreo"))
    console.print(f"choreo / raw loop (best of each): [bold]{ours / raw:.2f}[/] ({ours:,.0f} vs {raw:,.0f} events/s)")


def _retry(bootstrap: str, url: str) -> None:
    figures = retry_delay_accuracy(bootstrap, url, count=300, delay_s=0.5)
    console.print("retry delay accuracy (300 retries, 0.5 s policy, lateness vs due time): "
                  f"p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, max {figures['max']:.1f} ms, "
                  f"min {figures['min']:.1f} ms")


def _replay(bootstrap: str, url: str) -> None:
    if importlib.util.find_spec("bench.dlq_replay") is None:
        console.print("DLQ replay throughput: not measured (bench/dlq_replay.py missing)")
        return
    from bench.dlq_replay import replay_throughput

    rate = replay_throughput(bootstrap, url, 20000)
    console.print(f"DLQ replay throughput (20000 dead letters → retry topic): {rate:,.0f} events/s")


def _registry(url: str) -> None:
    for timing in registry_latency(url, 1000):
        console.print(f"registry {timing.name}: p50 {timing.percentile(50) * 1000:.2f} ms, "
                      f"p99 {timing.percentile(99) * 1000:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description="choreo benchmarks")
    parser.add_argument("--events", type=int, default=20000, help="events per throughput run")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {', '.join(ALL)}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the retry benchmark fails on purpose: keep its warnings out
    wanted = set(args.only.split(","))
    logs = Path(tempfile.mkdtemp(prefix="choreo-bench-logs-"))
    with EmbeddedBroker("127.0.0.1", free_port(), log_path=logs / "tansu.log") as broker:
        console.print(f"broker started in {broker.startup_seconds:.2f}s at {broker.bootstrap_servers}")
        registry, url = start_registry(broker.bootstrap_servers, logs)
        try:
            if "throughput" in wanted:
                _throughput(broker.bootstrap_servers, url, args.events)
            if "retry" in wanted:
                _retry(broker.bootstrap_servers, url)
            if "replay" in wanted:
                _replay(broker.bootstrap_servers, url)
            if "registry" in wanted:
                _registry(url)
        finally:
            registry.terminate()


if __name__ == "__main__":
    main()
