"""`choreo demo`: place a mix of orders through the order API and report what became of them.

Needs the shop running (`choreo dev`). Orders aim at every outcome of SPEC §7 (choreo.cli.demo_plan),
are placed at ``--rate`` per second and polled until terminal or ``--timeout`` seconds after the last
one was placed (choreo.cli.demo_client). The report (choreo.cli.demo_report) compares each order's
outcome with what its rule says and gives end-to-end latency percentiles from the orders' own
``placed_at`` → ``finished_at``.

Exit: 0 once the report is printed; 1 if the order API is not reachable, if no order could be placed, or,
with ``--strict``, unless every order finished as expected. ``--json`` prints only the summary on stdout.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from choreo.cli.demo_client import DemoClient, check_reachable
from choreo.cli.demo_plan import plan_orders
from choreo.cli.demo_report import summarize
from choreo.cli.errors import fail, friendly_errors
from choreo.cli.schemas import quiet_http_logs

# Piped or captured, Rich would assume 80 columns and cut the table; a terminal keeps its own width.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
progress_console = Console(stderr=True, highlight=False)
DEFAULT_URL = "http://127.0.0.1:8000"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def render(summary: dict[str, Any], url: str) -> None:
    """The human-readable report: per rule, per outcome, mismatches, latency."""
    table = Table(title=f"{summary['orders']} orders through {url}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("rule", "expected", "orders", "as expected", "other outcomes", "running", "failed", "p50"):
        left = column in ("rule", "expected", "other outcomes")
        table.add_column(column, justify="left" if left else "right", no_wrap=column != "other outcomes")
    for rule in summary["rules"]:
        others = {k: n for k, n in rule["actual"].items() if k not in (rule["expected"], "running", "failed")}
        ok = rule["as_expected"] == rule["orders"]
        table.add_row(rule["rule"], rule["expected"], str(rule["orders"]),
                      f"[green]{rule['as_expected']}[/]" if ok else f"[yellow]{rule['as_expected']}[/]",
                      ", ".join(f"[red]{n} {k}[/]" for k, n in others.items()) or "–",
                      str(rule["running"] or "–"), str(rule["failed"] or "–"), _seconds(rule["p50_s"]))
    console.print(table)
    outcomes = summary["outcomes"]
    parts = [f"completed {outcomes['completed']}"]
    parts += [f"cancelled/{reason} {n}" for reason, n in outcomes["cancelled"].items()]
    parts += [f"expired {outcomes['expired']}", f"failed {outcomes['failed']}", f"still running {outcomes['running']}"]
    console.print("outcomes  " + " · ".join(parts))
    for mismatch in summary["mismatches"][:10]:
        console.print(f"[red]mismatch[/]  {mismatch['order_id']} ({mismatch['rule']}): expected "
                      f"{mismatch['expected']}, got {mismatch['actual']}")
    if len(summary["mismatches"]) > 10:
        console.print(f"[red]mismatch[/]  … and {len(summary['mismatches']) - 10} more")
    for error, n in summary["errors"].items():
        console.print(f"[red]failed[/]    {n} × {error}")
    latency = summary["latency_s"]
    if latency:
        clock = {"server": "placed_at → finished_at", "client": "202 → first terminal poll",
                 "mixed": "server where known, else client"}[latency["source"]]
        console.print(f"latency   end to end ({clock}, {latency['count']} orders): p50 {_seconds(latency['p50'])}"
                      f" · p90 {_seconds(latency['p90'])} · p99 {_seconds(latency['p99'])}"
                      f" · max {_seconds(latency['max'])}")
    verdict = "[green]every order finished as expected[/]" if summary["ok"] else "[yellow]not all as expected[/]"
    console.print(f"done in {summary['elapsed_s']:.1f} s — {verdict}")


@friendly_errors
def demo(
    orders: int = typer.Option(200, "--orders", "-n", min=1, max=100_000, help="How many orders to place."),
    rate: float = typer.Option(20.0, min=0.1, max=5_000.0, help="Orders placed per second."),
    timeout: float = typer.Option(
        60.0, min=1.0, max=3_600.0, help="Seconds to wait, after the last order, for every job to finish."),
    url: str = typer.Option(DEFAULT_URL, envvar="CHOREO_ORDER_API_URL", help="Order API base URL."),
    seed: int = typer.Option(1, help="Seed of the order mix (the same seed places the same orders)."),
    slow_ttl: float = typer.Option(5.0, min=0.5, max=600.0, help="max_ttl_s of the orders meant to expire."),
    json_output: bool = typer.Option(False, "--json", help="Print only a JSON summary on stdout."),
    strict: bool = typer.Option(False, help="Exit 1 unless every order finished as its rule says."),
) -> None:
    """Place a mix of orders aimed at every outcome and report outcomes, mismatches and latency."""
    quiet_http_logs()  # httpx logs every request at INFO: thousands of lines of polling
    base_url = url.rstrip("/")
    check_reachable(base_url)
    planned = plan_orders(orders, seed=seed, slow_ttl_s=slow_ttl)
    started = time.monotonic()
    with Progress(TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=progress_console, disable=json_output) as progress:
        placed = progress.add_task("placed", total=orders)
        finished = progress.add_task("finished", total=orders)
        client = DemoClient(base_url, rate=rate, timeout_s=timeout,
                            on_placed=lambda: progress.advance(placed),
                            on_finished=lambda: progress.advance(finished))
        results = client.run(planned)
    summary = summarize(results, time.monotonic() - started)
    if json_output:
        print(json.dumps(summary, indent=2, default=str))
    else:
        render(summary, base_url)
    if summary["placed"] == 0:
        raise fail(f"no order was accepted by {base_url}: {', '.join(summary['errors']) or 'no answer'}")
    if strict and not summary["ok"]:
        raise fail(f"{len(summary['mismatches'])} mismatched, {summary['outcomes']['running']} still running, "
                   f"{summary['outcomes']['failed']} not placed")
