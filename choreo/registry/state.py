"""The registry's in-memory index: everything the topic says, folded record by record.

``RegistryState.apply`` is the only mutator and is used both when replaying the topic at start and after
each acknowledged write, so a restarted registry rebuilds exactly the state it served. Not thread-safe:
``SchemaStore`` guards it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from choreo.registry.compat import DEFAULT_LEVEL, CompatibilityLevel
from choreo.registry.errors import (
    MAX_VERSION,
    InvalidVersion,
    SchemaNotFound,
    SubjectNotFound,
    VersionNotFound,
)
from choreo.registry.records import ConfigRecord, DeleteSubjectRecord, Record, SchemaRecord, SchemaTombstone
from choreo.registry.schemas import AVRO, ParsedSchema, parse_avro

log = logging.getLogger(__name__)

LATEST: Literal["latest"] = "latest"
VersionSpec = int | Literal["latest"]


def parse_version(text: str) -> VersionSpec:
    """``"latest"`` or ``"-1"`` → LATEST, ``"1"``…``"2147483647"`` → int; InvalidVersion (42202) otherwise."""
    if text == LATEST or text == "-1":
        return LATEST
    try:
        version = int(text)
    except ValueError:
        raise InvalidVersion(text) from None
    if not 1 <= version <= MAX_VERSION:
        raise InvalidVersion(text)
    return version


@dataclass(frozen=True)
class SubjectVersion:
    subject: str
    version: int
    schema_id: int
    deleted: bool = False


class RegistryState:
    """Subjects → versions → schema ids, ids → schemas, and compatibility settings."""

    def __init__(self) -> None:
        self.schemas: dict[int, ParsedSchema] = {}
        self.subjects: dict[str, dict[int, SubjectVersion]] = {}
        self.configs: dict[str | None, CompatibilityLevel] = {}
        self.max_id = 0  # ids are never handed out twice while their records are in the topic
        self._ids: dict[str, int] = {}  # schema identity → id

    # -- folding the log -------------------------------------------------------------------------------

    def apply(self, record: Record) -> None:
        """Fold one topic record in. Raises InvalidSchema for a stored schema that no longer parses."""
        match record:
            case SchemaRecord():
                self.max_id = max(self.max_id, record.schema_id)
                if record.schema_type != AVRO:
                    log.warning("skipping %s schema %s: only AVRO is supported",
                                record.schema_type, record.schema_id)
                    return
                if record.schema_id not in self.schemas:
                    parsed = parse_avro(record.schema)
                    self.schemas[record.schema_id] = parsed
                    self._ids.setdefault(parsed.identity, record.schema_id)
                self.subjects.setdefault(record.subject, {})[record.version] = SubjectVersion(
                    record.subject, record.version, record.schema_id, record.deleted)
            case SchemaTombstone():
                versions = self.subjects.get(record.subject, {})
                gone = versions.pop(record.version, None)
                if not versions:
                    self.subjects.pop(record.subject, None)
                if gone is not None:
                    self._forget_if_unused(gone.schema_id)
            case ConfigRecord():
                if record.level is None:
                    self.configs.pop(record.subject, None)
                else:
                    self.configs[record.subject] = CompatibilityLevel.parse(record.level)
            case DeleteSubjectRecord():
                for number, entry in self.subjects.get(record.subject, {}).items():
                    if number <= record.version:
                        self.subjects[record.subject][number] = SubjectVersion(
                            entry.subject, number, entry.schema_id, deleted=True)

    def _forget_if_unused(self, schema_id: int) -> None:
        """After a permanent delete, an id no subject-version uses any more is not found (40403)."""
        if any(v.schema_id == schema_id for versions in self.subjects.values() for v in versions.values()):
            return
        parsed = self.schemas.pop(schema_id, None)
        if parsed is not None and self._ids.get(parsed.identity) == schema_id:
            del self._ids[parsed.identity]

    # -- queries ---------------------------------------------------------------------------------------

    def subject_names(self, *, deleted: bool = False) -> list[str]:
        """Subjects with a live version (or any version when ``deleted``), sorted."""
        return sorted(name for name, versions in self.subjects.items()
                      if any(deleted or not v.deleted for v in versions.values()))

    def versions(self, subject: str, *, deleted: bool = False) -> list[SubjectVersion]:
        """Versions of ``subject``, oldest first; SubjectNotFound (40401) when there are none to show."""
        found = [v for _, v in sorted(self.subjects.get(subject, {}).items()) if deleted or not v.deleted]
        if not found:
            raise SubjectNotFound(subject)
        return found

    def live_versions(self, subject: str) -> list[SubjectVersion]:
        """Live versions, oldest first; [] for an unknown or wholly deleted subject."""
        return [v for _, v in sorted(self.subjects.get(subject, {}).items()) if not v.deleted]

    def version(self, subject: str, spec: VersionSpec, *, deleted: bool = False) -> SubjectVersion:
        """One version (LATEST = newest shown); 40401 for an unknown subject, 40402 for a missing version."""
        shown = self.versions(subject, deleted=deleted)
        if spec == LATEST:
            return shown[-1]
        for entry in shown:
            if entry.version == spec:
                return entry
        raise VersionNotFound(spec)

    def schema(self, schema_id: int) -> ParsedSchema:
        try:
            return self.schemas[schema_id]
        except KeyError:
            raise SchemaNotFound(schema_id) from None

    def id_of(self, parsed: ParsedSchema) -> int | None:
        """The global id of a schema already registered (under any subject), else None."""
        return self._ids.get(parsed.identity)

    def find(self, subject: str, parsed: ParsedSchema, *, deleted: bool = False) -> SubjectVersion | None:
        """The newest version of ``subject`` holding ``parsed`` (soft-deleted ones only when ``deleted``)."""
        schema_id = self.id_of(parsed)
        matches = [v for v in self.subjects.get(subject, {}).values()
                   if v.schema_id == schema_id and (deleted or not v.deleted)]
        return max(matches, key=lambda v: v.version) if matches else None

    def usages(self, schema_id: int, *, deleted: bool = False) -> list[SubjectVersion]:
        """Subject-versions using ``schema_id``, by subject then version."""
        return sorted((v for versions in self.subjects.values() for v in versions.values()
                       if v.schema_id == schema_id and (deleted or not v.deleted)),
                      key=lambda v: (v.subject, v.version))

    def next_version(self, subject: str) -> int:
        """One past the highest version ever given in ``subject`` (soft-deleted ones count)."""
        return max(self.subjects.get(subject, {}), default=0) + 1

    def level(self, subject: str | None) -> CompatibilityLevel:
        """The effective level: the subject's own, else the global one, else BACKWARD."""
        if subject is not None and subject in self.configs:
            return self.configs[subject]
        return self.configs.get(None, DEFAULT_LEVEL)
