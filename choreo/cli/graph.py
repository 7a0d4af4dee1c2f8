"""`choreo graph [SERVICE…] [--format mermaid|dot]`: the choreography map from the declarations, checked.

Prints the map, then one line per finding (consumed but never produced, produced but never consumed,
no schema, cycle with its path). Exit 1 on a cycle no service on it declares intended
(``Service(intended_cycles=True)``) or on an event without a schema; the other findings are warnings.
"""

from __future__ import annotations

import sys

import typer

from choreo.cli.errors import fail, friendly_errors
from choreo.cli.progress import reference_services
from choreo.config import Settings
from choreo.errors import ConfigError
from choreo.flowmap import FlowMap, describe_cycle, dot, mermaid
from choreo.runtime.loader import load_service
from choreo.schemas.catalog import SchemaCatalog


@friendly_errors
def graph(
    services: list[str] = typer.Argument(None, help="Reference service names or package.module:attribute "
                                                    "(none: every reference service)."),
    output_format: str = typer.Option("mermaid", "--format", help="mermaid or dot."),
) -> None:
    """Draw which service consumes and emits which event, and check the flow for gaps and cycles."""
    if output_format not in ("mermaid", "dot"):
        raise ConfigError(f"--format must be mermaid or dot, not {output_format!r}")
    names = services or reference_services()
    if not names:
        raise ConfigError("no services to draw: name them (e.g. `choreo graph myshop.billing:service`)")
    flow = FlowMap.build([load_service(name) for name in names])
    sys.stdout.write(mermaid(flow) if output_format == "mermaid" else dot(flow))
    catalog = SchemaCatalog.load(Settings().schemas_dir)
    for event, service in flow.consumed_never_produced():
        _say(f"warning: {event} is consumed by {service} but produced by no service drawn")
    for event, service in flow.produced_never_consumed():
        _say(f"warning: {event} is produced by {service} but consumed by no service drawn")
    missing = flow.without_schema(catalog)
    for event in missing:
        _say(f"error: {event} has no schema in the catalog ({Settings().schemas_dir})")
    cycles, unintended = flow.cycles(), flow.unintended_cycles()
    for cycle in cycles:
        kind = "error: unintended cycle" if cycle in unintended else "cycle (intended)"
        _say(f"{kind}: {describe_cycle(cycle)}")
    if unintended or missing:
        raise fail(f"{len(unintended)} unintended cycle(s), {len(missing)} event(s) without a schema")


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
