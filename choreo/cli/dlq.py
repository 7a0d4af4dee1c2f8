"""`choreo dlq list|show|replay|history SERVICE`: inspect dead letters and send them back through the
service's retry path. Printing only; the logic lives in :mod:`choreo.retry.dlq` and :mod:`choreo.retry.replay`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from choreo.cli.errors import fail, friendly_errors
from choreo.cli.schemas import quiet_http_logs
from choreo.config import Settings
from choreo.errors import ConfigError
from choreo.retry import headers as h
from choreo.retry.dlq import (
    DeadLetter,
    DeadLetterFilter,
    decode_payload,
    find,
    format_ms,
    read_dead_letters,
    select,
)
from choreo.retry.replay import ReplayOptions, ReplayPlan, ReplayRun, read_history, replay

app = typer.Typer(help="Dead letters of a service: list, show, replay through its retry topic, history.",
                  no_args_is_help=True)


def _console() -> Console:
    # Built per command, not at import: the width then follows the terminal (or COLUMNS) of this run.
    return Console(highlight=False, soft_wrap=True)


Service = Annotated[str, typer.Argument(help="The service whose <service>.dlq to read.")]
Key = Annotated[str | None, typer.Option("--key", help="Only this record key (entity id).")]
Correlation = Annotated[str | None, typer.Option("--correlation-id", help="Only this job.")]
EventType = Annotated[str | None, typer.Option("--event-type", help="ce_type, full or short (OrderPlaced).")]
ErrorType = Annotated[str | None, typer.Option("--error-type", help="dlq-error-type (e.g. PermanentError).")]
Reason = Annotated[str | None, typer.Option("--reason", help="poison, permanent-error or retries-exhausted.")]
Since = Annotated[str | None, typer.Option("--since", help="Failed at/after: ISO-8601 or 30m, 1h, 2d ago.")]
Until = Annotated[str | None, typer.Option("--until", help="Failed at/before: ISO-8601 or 30m, 1h, 2d ago.")]


def _filter(key: str | None, correlation_id: str | None, event_type: str | None, error_type: str | None,
            reason: str | None, since: str | None, until: str | None) -> DeadLetterFilter:
    return DeadLetterFilter.parse(key=key, correlation_id=correlation_id, event_type=event_type,
                                  error_type=error_type, reason=reason, since=since, until=until)


def dead_letter_table(dead_letters: list[DeadLetter], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in (("when", "left"), ("key", "left"), ("event type", "left"), ("error type", "left"),
                          ("attempts", "right"), ("reason", "left"), ("original", "left"),
                          ("dlq p:offset", "right"), ("replays", "right")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for dead in dead_letters:
        table.add_row(format_ms(dead.last_failure_ms), Text(dead.key_text), Text(dead.event_type or "?"),
                      Text(dead.error_type), "" if dead.attempts is None else str(dead.attempts),
                      Text(dead.reason, style="red" if dead.is_poison else ""), Text(dead.original),
                      f"{dead.partition}:{dead.offset}", str(dead.replay_count or ""))
    return table


@app.command("list")
@friendly_errors
def list_dead_letters(service: Service, key: Key = None, correlation_id: Correlation = None,
                      event_type: EventType = None, error_type: ErrorType = None, reason: Reason = None,
                      since: Since = None, until: Until = None,
                      limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 100) -> None:
    """Dead letters of SERVICE, oldest first: when, key, event and error type, where they came from."""
    console = _console()
    flt = _filter(key, correlation_id, event_type, error_type, reason, since, until)
    everything = read_dead_letters(Settings(), service)
    matched = select(everything, flt)
    shown = matched[:limit]
    console.print(dead_letter_table(shown, f"{h.dlq_topic(service)}: {len(matched)} of {len(everything)} "
                                           f"dead letters match"))
    if len(matched) > len(shown):
        console.print(f"… {len(matched) - len(shown)} more (raise --limit)", style="dim")


@app.command()
@friendly_errors
def show(service: Service,
         offset: Annotated[str, typer.Argument(help="DLQ offset, or PARTITION:OFFSET as `dlq list` prints it.")],
         partition: Annotated[int | None, typer.Option(min=0, help="DLQ partition (needed if ambiguous).")] = None,
         ) -> None:
    """One dead letter: every header, the traceback, and the payload decoded with its writer schema."""
    console = _console()
    partition, number = _parse_position(offset, partition)
    settings = Settings()
    quiet_http_logs()
    dead = find(read_dead_letters(settings, service), number, partition)
    console.print(Text(f"{dead.topic} partition {dead.partition} offset {dead.offset}", style="bold"))
    table = Table(show_header=True, title_justify="left")
    table.add_column("header")
    table.add_column("value", overflow="fold")
    table.add_row("(key)", Text(dead.key_text if dead.key is not None else "(null)"))
    for name, value in dead.header_map.items():
        if name == h.DLQ_TRACEBACK:
            continue
        if name in (h.DLQ_FIRST_FAILURE, h.DLQ_LAST_FAILURE, h.DLQ_REPLAYED_AT, h.RETRY_NOT_BEFORE):
            value = f"{value}  ({format_ms(_int_or_none(value))})"
        table.add_row(name, Text(value))
    console.print(table)
    if dead.traceback:
        console.print(Text("traceback:", style="bold"))
        console.print(Text(dead.traceback.rstrip()), soft_wrap=True)
    payload = decode_payload(settings, dead)
    if payload.error is None:
        console.print(Text(f"payload (schema id {payload.schema_id}):", style="bold"))
        console.print(Text(json.dumps(payload.record, indent=2, default=str, ensure_ascii=False)))
    else:
        value = dead.value or b""
        console.print(Text(f"payload could not be decoded: {payload.error}", style="yellow"))
        console.print(Text(f"{len(value)} bytes, head: {value[:64].hex(' ')}"))
        console.print(Text(f"as text: {value[:64]!r}"))


@app.command("replay")
@friendly_errors
def replay_cmd(service: Service, key: Key = None, correlation_id: Correlation = None,
               event_type: EventType = None, error_type: ErrorType = None, reason: Reason = None,
               since: Since = None, until: Until = None,
               limit: Annotated[int | None, typer.Option(min=1, help="Replay at most this many.")] = None,
               dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be replayed.")] = False,
               rate: Annotated[float | None, typer.Option(help="Cap in events/s (default: none).")] = None,
               include_poison: Annotated[bool, typer.Option("--include-poison",
                                                            help="Also replay poison records.")] = False,
               max_replays: Annotated[int, typer.Option(min=1, help="Skip records replayed this often.")] = 3,
               again: Annotated[bool, typer.Option("--again",
                                                   help="Also replay what earlier runs replayed.")] = False,
               ) -> None:
    """Send matching dead letters back to SERVICE.retry.1 with a fresh attempt budget; record the run."""
    console = _console()
    flt = _filter(key, correlation_id, event_type, error_type, reason, since, until)
    options = ReplayOptions(limit=limit, include_poison=include_poison, max_replays=max_replays, again=again,
                            dry_run=dry_run, rate=rate)
    progress = Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, transient=True)
    task: list[Any] = []

    def on_plan(plan: ReplayPlan) -> None:
        _print_plan(console, service, plan, dry_run)
        if not dry_run and plan.selected:
            progress.start()
            task.append(progress.add_task("replay", total=len(plan.selected)))

    try:
        report = replay(Settings(), service, flt, options, on_plan=on_plan,
                        on_progress=lambda _: progress.advance(task[0]))
    finally:
        if task:
            progress.stop()
    run = report.run
    if run.outcome == "failed":
        raise fail(f"replay failed after {run.replayed} of {run.selected} records: {run.error} (run {run.run_id})")
    if report.audit_error:
        raise fail(f"replayed {run.replayed} records but {report.audit_error}")
    verb = "would replay" if dry_run else "replayed"
    console.print(f"{verb} {run.selected if dry_run else run.replayed} dead letters to "
                  f"{h.retry_topic(service, 1)} (run {run.run_id} recorded in {h.dlq_topic(service)}.history)")


@app.command()
@friendly_errors
def history(service: Service) -> None:
    """Every replay run of SERVICE (dry runs too), oldest first: who, when, filters, counts, outcome."""
    console = _console()
    runs = read_history(Settings(), service)
    table = Table(title=f"{h.dlq_topic(service)}.history: {len(runs)} runs", title_justify="left")
    for name in ("started", "who", "run", "mode", "filters", "matched", "replayed", "skipped", "outcome"):
        table.add_column(name, overflow="fold")
    for run in runs:
        table.add_row(format_ms(run.started_ms), Text(run.who), run.run_id[:8], _mode(run),
                      Text(_filters(run.filters)), str(run.matched),
                      str(run.replayed), Text(", ".join(f"{n} {r}" for r, n in run.skipped.items())),
                      Text(run.outcome if run.error is None else f"{run.outcome}: {run.error}",
                           style="green" if run.outcome == "ok" else "red"))
    console.print(table)


# -- helpers --------------------------------------------------------------------------------------

def _print_plan(console: Console, service: str, plan: ReplayPlan, dry_run: bool) -> None:
    skipped = plan.skipped_by_reason()
    why = ", ".join(f"{n} {reason}" for reason, n in skipped.items())
    console.print(f"{h.dlq_topic(service)}: {plan.matched} match, {len(plan.selected)} to replay, "
                  f"{len(plan.skipped)} skipped" + (f" ({why})" if why else ""))
    poison = [s.dead for s in plan.skipped if s.reason == "poison"]
    if poison:
        console.print(f"skipped poison records (replay with --include-poison): "
                      f"{', '.join(f'{d.partition}:{d.offset}' for d in poison)}", style="yellow")
    if dry_run:
        console.print(dead_letter_table(plan.selected, "dry run: would replay (nothing sent)"))


def _filters(filters: dict[str, Any]) -> str:
    """``{"error_type": "E", "since_ms": 1}`` → ``--error-type E --since '2024-05-01 12:00:00'``."""
    parts = []
    for name, value in filters.items():
        if name.endswith("_ms"):
            name, value = name[:-3], f"'{format_ms(value)}'"
        parts.append(f"--{name.replace('_', '-')} {value}")
    return " ".join(parts)


def _mode(run: ReplayRun) -> str:
    return "dry run" if run.dry_run else ("again" if run.options.get("again") else "replay")


def _parse_position(text: str, partition: int | None) -> tuple[int | None, int]:
    """``"7"`` or ``"2:7"`` → (partition, offset); ConfigError for anything else."""
    head, sep, tail = text.partition(":")
    try:
        number = int(tail if sep else head)
        given = int(head) if sep else None
    except ValueError:
        raise ConfigError(f"bad offset {text!r}: expected OFFSET or PARTITION:OFFSET (e.g. 7 or 2:7)") from None
    if number < 0 or (given is not None and given < 0):
        raise ConfigError(f"bad offset {text!r}: offsets and partitions are >= 0")
    if given is not None and partition is not None and given != partition:
        raise ConfigError(f"offset {text!r} names partition {given} but --partition is {partition}")
    return (given if given is not None else partition), number


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None
