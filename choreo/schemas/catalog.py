"""The schema catalog: every ``.avsc`` under the schemas directory, the single source of truth.

Layout: ``<schemas_dir>/<topic>/<RecordName>.avsc`` — the folder names the topic the event travels on,
so the registry subject follows from the file's place (TopicRecordNameStrategy: ``<topic>-<full name>``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException

from choreo.errors import ConfigError


@dataclass(frozen=True)
class EventSchema:
    """One Avro record schema and the topic its events travel on."""

    topic: str
    full_name: str
    schema_str: str
    path: Path
    parsed: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def name(self) -> str:
        """The record name without namespace (``OrderPlaced``)."""
        return self.full_name.rsplit(".", 1)[-1]

    @property
    def subject(self) -> str:
        """Registry subject under TopicRecordNameStrategy."""
        return f"{self.topic}-{self.full_name}"

    @property
    def fields(self) -> list[dict[str, Any]]:
        return list(json.loads(self.schema_str)["fields"])


def load_schema_file(path: Path, topic: str) -> EventSchema:
    """Parse one ``.avsc``; ConfigError naming the file if it is not a valid Avro record schema."""
    try:
        text = path.read_text()
        raw = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise ConfigError(f"{path}: an event schema must be one Avro record")
    try:
        parsed = fastavro.parse_schema(raw)
    except (SchemaParseException, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{path}: invalid Avro schema: {exc}") from exc
    full_name = str(parsed["name"])
    if path.stem != full_name.rsplit(".", 1)[-1]:
        raise ConfigError(f"{path}: file name must be the record name ({full_name.rsplit('.', 1)[-1]}.avsc)")
    return EventSchema(topic=topic, full_name=full_name, schema_str=json.dumps(raw), path=path, parsed=parsed)


class SchemaCatalog:
    """All event schemas of a project, looked up by full name or by short name when unambiguous."""

    def __init__(self, schemas: list[EventSchema]) -> None:
        self._by_full_name: dict[str, EventSchema] = {}
        for schema in schemas:
            if schema.full_name in self._by_full_name:
                other = self._by_full_name[schema.full_name]
                raise ConfigError(f"record {schema.full_name} is defined twice: {other.path} and {schema.path}")
            self._by_full_name[schema.full_name] = schema

    @classmethod
    def load(cls, directory: Path) -> SchemaCatalog:
        """Read ``directory/<topic>/*.avsc``. ConfigError if the folder is missing or a file is bad."""
        if not directory.is_dir():
            raise ConfigError(f"schemas directory {directory} does not exist (set CHOREO_SCHEMAS_DIR)")
        schemas = [
            load_schema_file(path, topic=path.parent.name)
            for path in sorted(directory.glob("*/*.avsc"))
        ]
        return cls(schemas)

    def get(self, name: str) -> EventSchema:
        """By full name (``io.choreo.shop.OrderPlaced``) or unique short name (``OrderPlaced``)."""
        if name in self._by_full_name:
            return self._by_full_name[name]
        matches = [s for s in self._by_full_name.values() if s.name == name]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            known = ", ".join(sorted(self._by_full_name)) or "none"
            raise ConfigError(f"no schema for event type {name!r} (known: {known})")
        raise ConfigError(f"event type {name!r} is ambiguous: {', '.join(s.full_name for s in matches)}")

    def topics(self) -> list[str]:
        return sorted({s.topic for s in self._by_full_name.values()})

    def __iter__(self) -> Iterator[EventSchema]:
        return iter(sorted(self._by_full_name.values(), key=lambda s: (s.topic, s.full_name)))

    def __len__(self) -> int:
        return len(self._by_full_name)
