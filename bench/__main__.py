"""`make bench`: start the embedded stack, run every benchmark, print figures and ratios.

Usage: python -m bench [--events N] [--rounds R] [--saga-orders N]
                      [--only throughput,latency,retry,replay,registry,saga]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import statistics
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.latency import latency
from bench.registry_latency import registry_latency
from bench.retry_delay import retry_delay_accuracy
from bench.saga import BASE_RATE, P99_LIMIT_S, SagaStep, saga_latency
from bench.throughput import BATCH, NAMES, throughput
from choreo.kafka.embedded import EmbeddedBroker, free_port
from choreo.testing.fixtures import start_registry

console = Console(soft_wrap=True)  # figures stay on one line in logs
ALL = ("throughput", "latency", "retry", "replay", "registry", "saga")
ON_BROKER = set(ALL) - {"saga"}  # saga starts its own `choreo dev`: the bench's broker is not needed for it
MIN_SAGA_ORDERS = 100  # a p99 needs at least 100 orders per step
MIN_EVENTS = 10 * BATCH  # every runner leaves its first batch(es) untimed: choreo up to 5, the apps 1,000 events


def _throughput(bootstrap: str, url: str, events: int, rounds: int) -> None:
    results = throughput(bootstrap, url, events, rounds)
    table = Table(title=f"consume → decode → handle → encode → produce → store offset ({events} events)")
    for column in ("run", "events", "seconds", "events/s", "CPU µs/event"):
        table.add_column(column, justify="right")
    for result in results:
        table.add_row(result.name, str(result.events), f"{result.seconds:.2f}", f"{result.rate:,.0f}",
                      f"{result.cpu_us_per_event:.1f}")
    console.print(table)
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for result in results:
        rates.setdefault(result.name, []).append(result.rate)
        cpu.setdefault(result.name, []).append(result.cpu_us_per_event)
    choreo = NAMES["choreo"]
    if choreo not in rates:
        return  # BENCH_ORDER left choreo out: the table is all there is
    ours = rates[choreo]
    labels = {"official": "raw loop with the official Avro serde",
              "fastavro": "raw loop with fastavro (choreo's serde path)"}  # the others: their NAMES
    for key, name in NAMES.items():
        if key == "choreo" or name not in rates:
            continue
        label = labels.get(key, name)
        theirs = rates[name]
        per_round = [a / b for a, b in zip(ours, theirs, strict=False)]  # runs of one round ran back to back
        console.print(f"choreo / {label}: median [bold]{statistics.median(ours) / statistics.median(theirs):.2f}[/]"
                      f" ({statistics.median(ours):,.0f} vs {statistics.median(theirs):,.0f} events/s; "
                      f"per round {min(per_round):.2f}–{max(per_round):.2f}); median CPU per event "
                      f"{statistics.median(cpu[choreo]):.1f} vs {statistics.median(cpu[name]):.1f} µs")


def _latency(bootstrap: str, url: str) -> None:
    rate, seconds = 2000, 8.0
    results = latency(bootstrap, url, rate=rate, seconds=seconds)
    table = Table(title=f"latency of one hop at {rate} events/s for {seconds:.0f} s "
                        "(ms, Ping produced → Pong produced)")
    for column in ("run", "events", "p50", "p90", "p99", "max"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r.name, str(r.count), f"{r.p50_ms:.1f}", f"{r.p90_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.max_ms:.1f}")
    console.print(table)
    by_name = {r.name: r for r in results}
    ours = by_name[NAMES["choreo"]]
    for key in ("official", "fastavro"):
        name = NAMES[key]
        raw = by_name[name]
        console.print(f"choreo / {name} latency: p50 [bold]{ours.p50_ms / raw.p50_ms:.2f}[/], "
                      f"p99 [bold]{ours.p99_ms / raw.p99_ms:.2f}[/]")


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


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:,.0f}"


def _saga(orders_at_50: int) -> None:
    def progress(step: SagaStep) -> None:
        verdict = "ok" if step.good else f"[yellow]over: {step.why_not()}[/]"
        console.print(f"saga {step.target}/s: {step.orders} orders, p99 {_ms(step.p99_s)} ms, "
                      f"achieved {step.achieved:.0f}/s — {verdict}")

    load = os.getloadavg()
    console.print(f"saga: starting choreo dev (load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
    result = saga_latency(orders_at_50, report=progress)
    table = Table(title=f"saga end to end, plain orders: target and achieved orders/s, latency in ms (placed_at → "
                        f"finished_at), {orders_at_50 / BASE_RATE:.0f} s per step, 1-minute load average; "
                        f"choreo dev ready in {result.dev_ready_s:.1f} s")
    for column in ("target", "achieved", "orders", "p50", "p90", "p99", "max", "completed", "load"):
        table.add_column(column, justify="right")
    for step in sorted(result.steps, key=lambda s: s.target):
        p99 = _ms(step.p99_s)
        table.add_row(str(step.target), f"{step.achieved:.0f}", str(step.orders), _ms(step.quantile(50)),
                      _ms(step.quantile(90)), p99 if step.good else f"[yellow]{p99}[/]", _ms(step.quantile(100)),
                      f"{step.completed}/{step.orders}", f"{step.load:.1f}")
    console.print(table)
    if result.best is None:
        why = f" ({result.first_bad.target}/s: {result.first_bad.why_not()})" if result.first_bad else ""
        console.print(f"saga: no rate kept p99 under {P99_LIMIT_S:.0f} s with every order completed at its rate{why}")
    else:
        beyond = (f"; {result.first_bad.target}/s: {result.first_bad.why_not()}" if result.first_bad
                  else " (the highest rate tried)")
        console.print(f"saga: highest rate with p99 < {P99_LIMIT_S:.0f} s: [bold]{result.best} orders/s[/]{beyond}")
    if result.stopped_by_budget:
        console.print("saga: search stopped at its time budget")
    before, after = result.load_before, result.load_after
    console.print(f"saga: {result.elapsed_s:.0f} s in all, choreo dev exited with {result.dev_exit}; load average "
                  f"{before[0]:.2f} before, {after[0]:.2f} after (1 min)")


def main() -> None:
    parser = argparse.ArgumentParser(description="choreo benchmarks")
    parser.add_argument("--events", type=int, default=50000, help=f"events per throughput run (at least {MIN_EVENTS})")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (every runner once per round)")
    parser.add_argument("--saga-orders", type=int, default=400,
                        help=f"orders of the saga's {BASE_RATE}/s step; faster steps place proportionally more "
                             f"(every step lasts as long; at least {MIN_SAGA_ORDERS})")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {', '.join(ALL)}")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    if wanted - set(ALL):
        parser.error(f"--only: unknown {', '.join(sorted(wanted - set(ALL)))} (choose from {', '.join(ALL)})")
    if args.saga_orders < MIN_SAGA_ORDERS:
        parser.error(f"--saga-orders must be at least {MIN_SAGA_ORDERS}: a p99 needs 100 orders per step")
    if args.events < MIN_EVENTS:
        parser.error(f"--events must be at least {MIN_EVENTS} (10 batches of {BATCH}): "
                     "every runner leaves its first batch(es) untimed")
    logging.basicConfig(level=logging.ERROR)  # the retry benchmark fails on purpose: keep its warnings out
    if wanted & ON_BROKER:
        _on_broker(wanted, args.events, args.rounds)
    if "saga" in wanted:
        _saga(args.saga_orders)


def _on_broker(wanted: set[str], events: int, rounds: int) -> None:
    """Every benchmark but the saga: one embedded broker and registry for all of them."""
    logs = Path(tempfile.mkdtemp(prefix="choreo-bench-logs-"))
    with EmbeddedBroker("127.0.0.1", free_port(), log_path=logs / "tansu.log") as broker:
        console.print(f"broker started in {broker.startup_seconds:.2f}s at {broker.bootstrap_servers}")
        registry, url = start_registry(broker.bootstrap_servers, logs)
        try:
            if "throughput" in wanted:
                _throughput(broker.bootstrap_servers, url, events, rounds)
            if "latency" in wanted:
                _latency(broker.bootstrap_servers, url)
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
