"""The registry's operations: decide, append to the log, then apply to the in-memory state.

Writes are serialized by one lock and follow *write-ahead* order: a record is applied only after the
log acknowledged it, so the state never holds what a restart would not rebuild. If a write fails, the
state is rebuilt from the log before the next write (the record may have landed after all).
Reads take a short lock on the state and never wait for Kafka.

Single writer: one registry process per topic (see ``choreo.registry.log``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from choreo.errors import InfrastructureError
from choreo.registry import compat
from choreo.registry.compat import CompatibilityLevel
from choreo.registry.errors import (
    IncompatibleSchema,
    StoreError,
    SubjectConfigNotFound,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotSoftDeleted,
    VersionSoftDeleted,
)
from choreo.registry.records import ConfigRecord, Record, SchemaRecord, SchemaTombstone
from choreo.registry.schemas import ParsedSchema
from choreo.registry.state import LATEST, RegistryState, VersionSpec

log = logging.getLogger(__name__)


class SchemaLog(Protocol):
    """Where records live durably. ``append`` returns only once the record is safe."""

    def replay(self, apply: Callable[[Record], None]) -> int: ...
    def append(self, record: Record) -> None: ...
    def close(self) -> None: ...


class SchemaStore:
    """Thread-safe registry operations over a ``SchemaLog``. Call ``load()`` before serving."""

    def __init__(self, log_: SchemaLog) -> None:
        self._log = log_
        self._state = RegistryState()
        self._state_lock = threading.Lock()   # guards reads against apply()
        self._write_lock = threading.Lock()   # one writer at a time: decide → append → apply
        self._stale = False

    def load(self) -> int:
        """Rebuild the state from the whole log; return the number of records read."""
        state = RegistryState()
        count = self._log.replay(state.apply)
        with self._state_lock:
            self._state = state
        self._stale = False
        log.info("registry state loaded: %d records, %d subjects, %d schemas",
                 count, len(state.subjects), len(state.schemas))
        return count

    def close(self) -> None:
        self._log.close()

    @contextmanager
    def read(self) -> Iterator[RegistryState]:
        """The current state, for queries only; hold it briefly."""
        with self._state_lock:
            yield self._state

    @contextmanager
    def _writing(self) -> Iterator[RegistryState]:
        with self._write_lock:
            if self._stale:
                try:
                    self.load()
                except InfrastructureError as exc:
                    raise StoreError(f"cannot re-read the registry topic: {exc}") from exc
            yield self._state  # writers are serialized, so deciding needs no state lock

    def _write(self, *records: Record) -> None:
        for record in records:
            try:
                self._log.append(record)
            except Exception:
                self._stale = True
                raise
            with self._state_lock:
                self._state.apply(record)

    # -- schemas ---------------------------------------------------------------------------------------

    def register(self, subject: str, parsed: ParsedSchema) -> int:
        """Register ``parsed`` under ``subject``; return its global id.

        The same schema twice → the existing version and id; the same schema under another subject →
        the same id, a new version there. IncompatibleSchema (409) if the subject's level refuses it.
        """
        with self._writing() as state:
            existing = state.find(subject, parsed)
            if existing is not None:
                return existing.schema_id
            level = state.level(subject)
            previous = [(v.version, state.schema(v.schema_id)) for v in state.live_versions(subject)]
            problems = compat.check(level, parsed, previous)
            if problems:
                raise IncompatibleSchema(subject, problems)
            schema_id = state.id_of(parsed) or state.max_id + 1
            self._write(SchemaRecord(subject, state.next_version(subject), schema_id, parsed.text))
            return schema_id

    def compatibility(self, subject: str, parsed: ParsedSchema, version: VersionSpec | None) -> list[str]:
        """Problems registering ``parsed`` would meet ([] = compatible).

        ``version`` None checks what registration would (per level, transitive or not); a version
        checks that one only. An empty subject is compatible with anything when asked for LATEST/None.
        """
        with self.read() as state:
            level = state.level(subject)
            if version is None or (version == LATEST and not state.live_versions(subject)):
                previous = [(v.version, state.schema(v.schema_id)) for v in state.live_versions(subject)]
            else:
                entry = state.version(subject, version)
                previous = [(entry.version, state.schema(entry.schema_id))]
                level = CompatibilityLevel(level.removesuffix("_TRANSITIVE"))
        return compat.check(level, parsed, previous)

    # -- deletes ---------------------------------------------------------------------------------------

    def delete_subject(self, subject: str, *, permanent: bool) -> list[int]:
        """Soft-delete all live versions, or (``permanent``) erase a soft-deleted subject; return versions."""
        with self._writing() as state:
            versions = sorted(state.subjects.get(subject, {}).values(), key=lambda v: v.version)
            if not versions:
                raise SubjectNotFound(subject)
            live = [v for v in versions if not v.deleted]
            if permanent:
                if live:
                    raise SubjectNotSoftDeleted(subject)
                self._write(*(SchemaTombstone(subject, v.version) for v in versions))
                if subject in state.configs:
                    self._write(ConfigRecord(subject, None))
                return [v.version for v in versions]
            if not live:
                raise SubjectSoftDeleted(subject)
            self._write(*(SchemaRecord(subject, v.version, v.schema_id, state.schema(v.schema_id).text,
                                       deleted=True) for v in live))
            return [v.version for v in live]

    def delete_version(self, subject: str, spec: VersionSpec, *, permanent: bool) -> int:
        """Soft-delete one version, or (``permanent``) erase a soft-deleted one; return its number."""
        with self._writing() as state:
            # "latest" for a soft delete is the newest live version; otherwise soft-deleted ones count.
            entry = state.version(subject, spec, deleted=permanent or spec != LATEST)
            if permanent:
                if not entry.deleted:
                    raise VersionNotSoftDeleted(subject, entry.version)
                self._write(SchemaTombstone(subject, entry.version))
            else:
                if entry.deleted:
                    raise VersionSoftDeleted(subject, entry.version)
                self._write(SchemaRecord(subject, entry.version, entry.schema_id,
                                         state.schema(entry.schema_id).text, deleted=True))
            return entry.version

    # -- compatibility settings ------------------------------------------------------------------------

    def set_level(self, subject: str | None, level: CompatibilityLevel) -> CompatibilityLevel:
        with self._writing():
            self._write(ConfigRecord(subject, level.value))
        return level

    def delete_level(self, subject: str | None) -> CompatibilityLevel:
        """Remove a subject's (or the global) setting; return the level in force before."""
        with self._writing() as state:
            before = state.level(subject)
            if subject is not None and subject not in state.configs:
                raise SubjectConfigNotFound(subject)
            if subject in state.configs:
                self._write(ConfigRecord(subject, None))
            return before
