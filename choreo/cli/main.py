"""Entry point of the `choreo` console script: wires each command module into one Typer app."""

from __future__ import annotations

import logging
import os

import typer

from choreo.cli import broker as broker_cmd
from choreo.cli import demo as demo_cmd
from choreo.cli import dev as dev_cmd
from choreo.cli import dlq as dlq_cmd
from choreo.cli import graph as graph_cmd
from choreo.cli import progress as progress_cmd
from choreo.cli import registry as registry_cmd
from choreo.cli import run as run_cmd
from choreo.cli import schemas as schemas_cmd
from choreo.cli import topics as topics_cmd

app = typer.Typer(
    name="choreo",
    help="Event choreography on Kafka: run the stack, services, schemas and dead letters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("broker")(broker_cmd.broker)
app.command("registry")(registry_cmd.registry)
app.add_typer(schemas_cmd.app, name="schemas")
app.command("run")(run_cmd.run)
app.add_typer(topics_cmd.app, name="topics")
app.command("dev")(dev_cmd.dev)
app.command("demo")(demo_cmd.demo)
app.add_typer(dlq_cmd.app, name="dlq")
app.command("progress")(progress_cmd.progress)
app.command("graph")(graph_cmd.graph)


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("CHOREO_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    app()


if __name__ == "__main__":
    main()
