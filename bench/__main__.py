"""`make bench`: start the embedded stack, run every benchmark, print figures and ratios.

Usage: python -m bench [--events N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.throughput import throughput
from choreo.kafka.embedded import EmbeddedBroker, free_port
from choreo.testing.fixtures import start_registry

console = Console()


def main() -> None:
    parser = argparse.ArgumentParser(description="choreo benchmarks")
    parser.add_argument("--events", type=int, default=20000, help="events per throughput run")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="choreo-bench-logs-"))
    with EmbeddedBroker("127.0.0.1", free_port(), log_path=logs / "tansu.log") as broker:
        console.print(f"broker started in {broker.startup_seconds:.2f}s at {broker.bootstrap_servers}")
        registry, url = start_registry(broker.bootstrap_servers, logs)
        try:
            results = throughput(broker.bootstrap_servers, url, args.events)
        finally:
            registry.terminate()
    table = Table(title=f"consume → decode → handle → encode → produce → store offset ({args.events} events)")
    for column in ("run", "events", "seconds", "events/s"):
        table.add_column(column, justify="right")
    for result in results:
        table.add_row(result.name, str(result.events), f"{result.seconds:.2f}", f"{result.rate:,.0f}")
    console.print(table)
    raw = max(r.rate for r in results if r.name.startswith("raw"))
    ours = max(r.rate for r in results if r.name.startswith("choreo"))
    console.print(f"choreo / raw loop (best of each): [bold]{ours / raw:.2f}[/] ({ours:,.0f} vs {raw:,.0f} events/s)")


if __name__ == "__main__":
    main()
