"""`choreo broker`: run the embedded Tansu broker in the foreground until Ctrl-C / SIGTERM."""

from __future__ import annotations

import signal
import threading

import typer
from rich.console import Console

from choreo.cli.errors import friendly_errors
from choreo.kafka.embedded import EmbeddedBroker

console = Console(highlight=False)


@friendly_errors
def broker(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(9092, min=1, max=65535, help="Kafka port."),
) -> None:
    """Start the embedded Kafka-compatible broker (Tansu, in memory) and wait for Ctrl-C."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with EmbeddedBroker(host, port) as embedded:
        console.print(
            f"broker listening on [bold]{embedded.bootstrap_servers}[/] "
            f"(ready in {embedded.startup_seconds:.2f}s, in-memory storage) — Ctrl-C to stop"
        )
        while not stop.wait(0.5):
            if not embedded.is_running():
                raise typer.Exit(1)
    console.print("broker stopped")
