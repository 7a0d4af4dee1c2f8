"""`choreo schemas register|check|list`: the catalog (``CHOREO_SCHEMAS_DIR``) against the registry
(``CHOREO_SCHEMA_REGISTRY_URL``). One line per subject; a non-zero exit when any subject is incompatible."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from choreo.cli.errors import fail, friendly_errors
from choreo.config import Settings
from choreo.errors import ChoreoError
from choreo.schemas.catalog import SchemaCatalog
from choreo.schemas.registration import (
    Outcome,
    SubjectOutcome,
    apply,
    describe_subjects,
    plan_registration,
    registry_client,
)

app = typer.Typer(
    help="Register the Avro schemas (schemas/<topic>/<Record>.avsc) with the schema registry, or check them.",
    no_args_is_help=True,
)
console = Console(highlight=False, soft_wrap=True)

_STYLE = {
    Outcome.NEW_SUBJECT: "green",
    Outcome.NEW_VERSION: "green",
    Outcome.UNCHANGED: "dim",
    Outcome.INCOMPATIBLE: "bold red",
    Outcome.REJECTED: "bold red",
}


def quiet_http_logs() -> None:
    """The HTTP clients log every request at INFO: keep the one-line-per-subject output readable."""
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)


def outcome_line(outcome: SubjectOutcome, *, dry_run: bool = False) -> Text:
    """``new version   orders-io.choreo.shop.OrderPlaced  id 7 v2`` (a Text: registry reasons may hold [])."""
    line = Text()
    line.append(f"{outcome.outcome.value:<13}", style=_STYLE[outcome.outcome])
    line.append(f" {outcome.subject}")
    if outcome.schema_id is not None:
        line.append(f"  id {outcome.schema_id}")
    if outcome.version is not None:
        line.append(f" v{outcome.version}")
    if dry_run and outcome.outcome.writes:
        line.append("  (would register)", style="dim")
    if outcome.reasons:
        line.append(": " + "; ".join(outcome.reasons))
    return line


def print_outcomes(outcomes: Iterable[SubjectOutcome], *, dry_run: bool = False) -> list[SubjectOutcome]:
    """Print one line per subject; return the failed ones."""
    failed = []
    for outcome in outcomes:
        console.print(outcome_line(outcome, dry_run=dry_run))
        if outcome.outcome.failed:
            failed.append(outcome)
    return failed


def _summary_error(failed: list[SubjectOutcome], verb: str) -> typer.Exit:
    names = ", ".join(o.subject for o in failed)
    return fail(f"{len(failed)} schema(s) {verb}: {names}")


def _load() -> tuple[Settings, SchemaCatalog]:
    quiet_http_logs()
    settings = Settings()
    return settings, SchemaCatalog.load(settings.schemas_dir)


@app.command()
@friendly_errors
def register() -> None:
    """Register every new or changed schema; unchanged ones are left alone. Exit 1 if any is incompatible."""
    settings, catalog = _load()
    client = registry_client(settings.schema_registry_url)
    outcomes = apply(plan_registration(catalog, client), catalog, client)
    failed = print_outcomes(outcomes)
    if failed:
        raise _summary_error(failed, "not registered")


@app.command()
@friendly_errors
def check(
    services: list[str] = typer.Option(None, "--service", help="Services whose use of a changed schema to "
                                       "report (repeatable; default: every reference service)."),
) -> None:
    """Dry run of `register` for CI: report what would change, and which services consume and produce
    each changed event; write nothing. Exit 1 if any is refused."""
    settings, catalog = _load()
    client = registry_client(settings.schema_registry_url)
    outcomes = plan_registration(catalog, client)
    users = _users_of_events(services, catalog)
    failed = []
    for outcome in outcomes:
        failed += print_outcomes([outcome], dry_run=True)
        if outcome.outcome != Outcome.UNCHANGED and users:
            consumers, producers = users.get(outcome.full_name, ([], []))
            console.print(f"    consumed by: {', '.join(consumers) or '-'}; produced by: {', '.join(producers) or '-'}")
    if failed:
        raise _summary_error(failed, "would be refused")


def _users_of_events(names: list[str] | None, catalog: SchemaCatalog) -> dict[str, tuple[list[str], list[str]]]:
    """Avro full name → (consuming services, producing services), from the services' declarations
    (the map of `choreo graph`); {} when there are no services to ask (a project without services/)."""
    from choreo.cli.progress import reference_services
    from choreo.flowmap import FlowMap
    from choreo.runtime.loader import load_service

    targets = names or reference_services()
    if not targets:
        return {}
    flow = FlowMap.build([load_service(name) for name in targets])
    users: dict[str, tuple[list[str], list[str]]] = {}
    for roles, index in ((flow.consumes, 0), (flow.emits, 1)):
        for service, events in sorted(roles.items()):
            for event in events:
                try:
                    full_name = catalog.get(event.avro_name).full_name
                except ChoreoError:
                    continue  # no schema: `choreo graph` reports it
                users.setdefault(full_name, ([], []))[index].append(service)
    return users


@app.command("list")
@friendly_errors
def list_subjects() -> None:
    """Subjects in the registry with their latest version and id, and whether the local .avsc matches."""
    settings, catalog = _load()
    rows = describe_subjects(catalog, registry_client(settings.schema_registry_url))
    table = Table(title=f"subjects at {settings.schema_registry_url}")
    table.add_column("subject")
    table.add_column("latest", justify="right")
    table.add_column("id", justify="right")
    table.add_column("local .avsc")
    for row in rows:
        local_style = "green" if row.local == "matches" else "yellow"
        table.add_row(
            Text(row.subject),
            "" if row.latest_version is None else str(row.latest_version),
            "" if row.latest_id is None else str(row.latest_id),
            Text(row.local, style=local_style),
        )
    # Never cut a subject: a piped console is 80 columns wide, narrower than long subject names.
    needed = max((len(row.subject) for row in rows), default=0) + max((len(row.local) for row in rows), default=0) + 30
    Console(highlight=False, width=max(console.width, needed)).print(table)
