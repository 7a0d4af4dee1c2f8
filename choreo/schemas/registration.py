"""Register the catalog's schemas with a Confluent-compatible registry, or check that they would register.

Pure planning is separate from writing and from printing:

- ``plan_registration(catalog, client)`` asks the registry, read-only, what registering each schema does;
- ``apply(plan, catalog, client)`` registers the outcomes that write and returns the final outcomes;
- ``describe_subjects(catalog, client)`` compares the registry's subjects with the local files.

Every schema goes under its TopicRecordNameStrategy subject (``<topic>-<full name>``). Registry failures that
are not about one schema (unreachable, 5xx, bad URL) become ``InfrastructureError`` / ``ConfigError``.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

from confluent_kafka.schema_registry import RegisteredSchema, Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from choreo.errors import ConfigError, InfrastructureError
from choreo.schemas.catalog import EventSchema, SchemaCatalog
from choreo.serde.avro import is_transport_error

T = TypeVar("T")


# Confluent error codes (SPEC §5).
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
INVALID_SCHEMA = 42201


class Outcome(enum.Enum):
    """What registering one schema does (or did) to its subject."""

    NEW_SUBJECT = "new subject"
    NEW_VERSION = "new version"
    UNCHANGED = "unchanged"
    INCOMPATIBLE = "incompatible"
    REJECTED = "rejected"  # the registry refused the schema itself (42201 invalid schema)

    @property
    def writes(self) -> bool:
        """True when applying this outcome registers something."""
        return self in (Outcome.NEW_SUBJECT, Outcome.NEW_VERSION)

    @property
    def failed(self) -> bool:
        return self in (Outcome.INCOMPATIBLE, Outcome.REJECTED)


@dataclass(frozen=True)
class SubjectOutcome:
    """One subject's outcome. ``schema_id``/``version`` are known once the schema is (or was) registered."""

    subject: str
    full_name: str
    outcome: Outcome
    schema_id: int | None = None
    version: int | None = None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class SubjectListing:
    """One row of ``choreo schemas list``: a registry subject and/or a local schema."""

    subject: str
    latest_version: int | None = None
    latest_id: int | None = None
    local: str = "no local file"  # "matches", "older (vN)", "differs", "not registered", "no local file"
    path: str | None = field(default=None, compare=False)


def registry_client(url: str, **config: Any) -> SchemaRegistryClient:
    """The official client for ``url``; ConfigError if the URL is unusable."""
    try:
        return SchemaRegistryClient({"url": url, **config})
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid schema registry URL {url!r} (CHOREO_SCHEMA_REGISTRY_URL): {exc}") from exc


def avro_schema(event: EventSchema) -> Schema:
    return Schema(event.schema_str, schema_type="AVRO")


def _base_url(client: SchemaRegistryClient) -> str:
    return ", ".join(getattr(client._rest_client, "base_urls", [])) or "the schema registry"


@contextmanager
def _registry_errors(client: SchemaRegistryClient) -> Iterator[None]:
    """Transport failures and server errors become InfrastructureError; 4xx SchemaRegistryError passes."""
    try:
        yield
    except SchemaRegistryError as exc:
        if exc.http_status_code >= 500 or exc.http_status_code in (401, 403):
            raise InfrastructureError(f"schema registry at {_base_url(client)} failed: {exc}") from exc
        raise
    except Exception as exc:
        if not is_transport_error(exc):
            raise
        reason = str(exc) or type(exc).__name__
        raise InfrastructureError(f"schema registry unreachable at {_base_url(client)}: {reason}") from exc


def _call(client: SchemaRegistryClient, action: Callable[[], T]) -> T:
    with _registry_errors(client):
        return action()


def _lookup(client: SchemaRegistryClient, event: EventSchema) -> RegisteredSchema | int:
    """The registered version of exactly this schema, or the error code saying why there is none."""
    try:
        return _call(client, partial(client.lookup_schema, event.subject, avro_schema(event)))
    except SchemaRegistryError as exc:
        if exc.error_code in (SUBJECT_NOT_FOUND, SCHEMA_NOT_FOUND):
            return int(exc.error_code)
        raise InfrastructureError(f"schema registry lookup of {event.subject} failed: {exc}") from exc


_ERROR_TYPE = re.compile(r"errorType:'(?P<type>[A-Z_]+)'")
_DESCRIPTION = re.compile(r"description:'(?P<text>.*?)'(?:, additionalInfo:|\}$)", re.DOTALL)
_CONTEXT = re.compile(
    r"^\{(?P<key>oldSchemaVersion|oldSchema|compatibility): ?'?(?P<value>.*?)'?\}$", re.DOTALL
)


def summarize_reasons(messages: list[str]) -> tuple[str, ...]:
    """Confluent's verbose messages made readable: ``TYPE: description`` per problem, then the context.

    Confluent (and choreo's registry) send each problem as ``{errorType:'…', description:'…', …}`` plus
    ``{oldSchemaVersion: 1}``, ``{oldSchema: '…'}`` and ``{compatibility: 'BACKWARD'}``; the old schema is
    dropped (it is in the registry), the version and level become one trailing note. Other text passes as is.
    """
    problems: list[str] = []
    context: dict[str, str] = {}
    for message in messages:
        kind, description = _ERROR_TYPE.search(message), _DESCRIPTION.search(message)
        if kind and description:
            problems.append(f"{kind['type']}: {description['text']}")
        elif (match := _CONTEXT.match(message.strip())) is not None:
            context[match["key"]] = match["value"]
        else:
            problems.append(message)
    notes = []
    if "compatibility" in context:
        notes.append(context["compatibility"])
    if "oldSchemaVersion" in context:
        notes.append(f"against v{context['oldSchemaVersion']}")
    if notes and problems:
        problems[-1] += f" ({', '.join(notes)})"
    return tuple(problems)


def compatibility_messages(client: SchemaRegistryClient, event: EventSchema) -> tuple[bool, list[str]]:
    """Test ``event`` against its subject with ``?verbose=true``: (compatible, the registry's reasons).

    The official client's ``test_compatibility`` returns only the boolean and drops ``messages``, so this
    sends the same request through the client's own REST layer (same URL list, auth, TLS and retries).
    The registry picks the versions to test against from the subject's compatibility level.
    """
    subject = quote(event.subject, safe="")
    body = avro_schema(event).to_dict()
    path = f"compatibility/subjects/{subject}/versions?verbose=true"
    try:
        response = _call(client, partial(client._rest_client.post, path, body=body))
    except SchemaRegistryError as exc:
        if exc.error_code == INVALID_SCHEMA:
            return False, [f"invalid schema: {exc.error_message}"]
        if exc.http_status_code not in (404, 405) or exc.error_code in (SUBJECT_NOT_FOUND, VERSION_NOT_FOUND):
            raise InfrastructureError(f"compatibility check of {event.subject} failed: {exc}") from exc
        # A registry without the all-versions endpoint: test against the latest version instead.
        path = f"compatibility/subjects/{subject}/versions/latest?verbose=true"
        response = _call(client, partial(client._rest_client.post, path, body=body))
    compatible = bool(response.get("is_compatible"))
    messages = [str(m) for m in response.get("messages") or []]
    if not compatible and not messages:
        messages = ["the registry reports it incompatible (gave no reason)"]
    return compatible, messages


def plan_one(client: SchemaRegistryClient, event: EventSchema) -> SubjectOutcome:
    """Read-only: what registering ``event`` under its subject would do."""
    found = _lookup(client, event)
    base = {"subject": event.subject, "full_name": event.full_name}
    if isinstance(found, RegisteredSchema):
        return SubjectOutcome(**base, outcome=Outcome.UNCHANGED,
                              schema_id=found.schema_id, version=found.version)
    if found == SUBJECT_NOT_FOUND:
        return SubjectOutcome(**base, outcome=Outcome.NEW_SUBJECT)
    compatible, messages = compatibility_messages(client, event)
    if compatible:
        return SubjectOutcome(**base, outcome=Outcome.NEW_VERSION)
    rejected = any(m.startswith("invalid schema:") for m in messages)
    return SubjectOutcome(**base, outcome=Outcome.REJECTED if rejected else Outcome.INCOMPATIBLE,
                          reasons=summarize_reasons(messages))


def plan_registration(catalog: SchemaCatalog, client: SchemaRegistryClient) -> list[SubjectOutcome]:
    """One outcome per schema of the catalog, in catalog order (topic, then name). Writes nothing."""
    return [plan_one(client, event) for event in catalog]


def _register(client: SchemaRegistryClient, event: EventSchema, planned: SubjectOutcome) -> SubjectOutcome:
    try:
        registered = _call(
            client, partial(client.register_schema_full_response, event.subject, avro_schema(event))
        )
    except SchemaRegistryError as exc:
        # Lost a race with another writer, or the subject is transitive: the registry has the last word.
        outcome = Outcome.REJECTED if exc.error_code == INVALID_SCHEMA else Outcome.INCOMPATIBLE
        return replace(planned, outcome=outcome, reasons=(exc.error_message,))
    version = registered.version
    if version is None:  # Confluent answers POST /versions with the id only
        found = _lookup(client, event)
        version = found.version if isinstance(found, RegisteredSchema) else None
    return replace(planned, schema_id=registered.schema_id, version=version)


def apply(
    plan: list[SubjectOutcome], catalog: SchemaCatalog, client: SchemaRegistryClient
) -> list[SubjectOutcome]:
    """Register every planned new subject / new version; return the plan with ids, versions and late failures.

    Incompatible subjects are left alone; the others still register (one bad schema does not block the rest).
    """
    return [_register(client, catalog.get(o.full_name), o) if o.outcome.writes else o for o in plan]


def register_all(catalog: SchemaCatalog, client: SchemaRegistryClient) -> list[SubjectOutcome]:
    """plan_registration + apply."""
    return apply(plan_registration(catalog, client), catalog, client)


def _same_schema(a: str, b: str) -> bool:
    try:
        return json.loads(a) == json.loads(b)
    except json.JSONDecodeError:
        return a == b


def describe_subjects(catalog: SchemaCatalog, client: SchemaRegistryClient) -> list[SubjectListing]:
    """Every subject in the registry plus every local schema not registered yet, sorted by subject."""
    local = {event.subject: event for event in catalog}
    subjects = _call(client, client.get_subjects)
    rows: list[SubjectListing] = []
    for subject in sorted(set(subjects) | set(local)):
        event = local.get(subject)
        path = str(event.path) if event else None
        if subject not in subjects:
            rows.append(SubjectListing(subject, local="not registered", path=path))
            continue
        try:
            latest = _call(client, partial(client.get_latest_version, subject))
        except SchemaRegistryError as exc:  # deleted between the two calls
            rows.append(SubjectListing(subject, local=f"unreadable: {exc.error_message}", path=path))
            continue
        rows.append(SubjectListing(subject, latest.version, latest.schema_id,
                                   _local_state(client, event, latest), path))
    return rows


def _local_state(client: SchemaRegistryClient, event: EventSchema | None, latest: RegisteredSchema) -> str:
    if event is None:
        return "no local file"
    if latest.schema.schema_str is not None and _same_schema(latest.schema.schema_str, event.schema_str):
        return "matches"
    found = _lookup(client, event)
    if not isinstance(found, RegisteredSchema):
        return "differs"
    if found.version == latest.version:
        return "matches"
    return f"older (v{found.version})"
