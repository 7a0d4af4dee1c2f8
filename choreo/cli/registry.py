"""`choreo registry`: the Confluent-compatible schema registry, storing schemas in a Kafka topic."""

from __future__ import annotations

import typer
from rich.console import Console

from choreo.cli.errors import friendly_errors
from choreo.config import get_settings
from choreo.registry.server import serve

console = Console(highlight=False)


@friendly_errors
def registry(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8081, min=1, max=65535, help="HTTP port (Confluent's default is 8081)."),
) -> None:
    """Serve the schema registry (Confluent REST API v1) until Ctrl-C / SIGTERM.

    Schemas live in the compacted topic CHOREO_REGISTRY_TOPIC (default _schemas) at CHOREO_BOOTSTRAP_SERVERS.

    State is rebuilt from that topic at start. Run exactly one registry per topic.
    """
    serve(host, port, get_settings(), announce=lambda line: console.print(line, soft_wrap=True))
    console.print("registry stopped")
