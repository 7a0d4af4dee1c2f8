"""`choreo topics ensure`: create every domain, retry and dead-letter topic, idempotently."""

from __future__ import annotations

import typer
from rich.console import Console

from choreo.cli.errors import friendly_errors
from choreo.config import Settings
from choreo.kafka.admin import ensure_topics
from choreo.retry.router import RetryRouter
from choreo.runtime.loader import load_service
from choreo.runtime.worker import required_topics, topic_specs
from choreo.schemas.catalog import SchemaCatalog

app = typer.Typer(help="Topic administration.", no_args_is_help=True)
console = Console(highlight=False)


@app.command("ensure")
@friendly_errors
def ensure(
    services: list[str] = typer.Argument(
        None, help="Services whose retry/DLQ topics to create (reference names or package.module:attr)."),
) -> None:
    """Create every catalog (domain) topic, plus the retry and DLQ topics of SERVICES. Existing topics stay."""
    settings = Settings()
    catalog = SchemaCatalog.load(settings.schemas_dir)
    names = set(catalog.topics())
    for target in services or []:
        bound = load_service(target).bind(catalog)
        names |= required_topics(bound, RetryRouter.for_service(bound).topics())
    result = ensure_topics(settings.librdkafka(), topic_specs(settings, names))
    for name in sorted(names):
        state = "[green]created[/]" if name in result.created else "exists"
        console.print(f"{name:40s} {state}")
    console.print(f"{len(result.created)} created, {len(result.existing)} already there "
                  f"({settings.topic_partitions} partitions, replication {settings.topic_replication_factor})")
