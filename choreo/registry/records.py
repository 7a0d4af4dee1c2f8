"""The records of the registry topic, in Confluent Schema Registry's ``_schemas`` layout.

Keys and values are JSON, keys written with a fixed field order so that compaction (latest value per key
wins) sees one key per subject-version and per config scope:

    SCHEMA   key {"keytype":"SCHEMA","subject":s,"version":v,"magic":1}
             value {"subject":s,"version":v,"id":n,"schema":"…","deleted":false} — null: permanently deleted
    CONFIG   key {"keytype":"CONFIG","subject":s|null,"magic":0}
             value {"compatibilityLevel":"FULL"} — null: config removed
    DELETE_SUBJECT  read only (Confluent writes it on a soft subject delete): versions ≤ v are deleted.

Anything else (NOOP, MODE, unknown key types) decodes to None and is skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from choreo.registry.schemas import AVRO


@dataclass(frozen=True)
class SchemaRecord:
    subject: str
    version: int
    schema_id: int
    schema: str
    deleted: bool = False
    schema_type: str = AVRO


@dataclass(frozen=True)
class SchemaTombstone:
    """A subject-version permanently deleted."""

    subject: str
    version: int


@dataclass(frozen=True)
class ConfigRecord:
    """Compatibility level for ``subject`` (None = global); ``level`` None removes the setting."""

    subject: str | None
    level: str | None


@dataclass(frozen=True)
class DeleteSubjectRecord:
    subject: str
    version: int


Record = SchemaRecord | SchemaTombstone | ConfigRecord | DeleteSubjectRecord


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode(record: Record) -> tuple[bytes, bytes | None]:
    """Key and value bytes of ``record`` (value None is a tombstone)."""
    match record:
        case SchemaRecord():
            key = {"keytype": "SCHEMA", "subject": record.subject, "version": record.version, "magic": 1}
            value: dict[str, Any] = {"subject": record.subject, "version": record.version,
                                     "id": record.schema_id, "schema": record.schema,
                                     "deleted": record.deleted}
            if record.schema_type != AVRO:
                value["schemaType"] = record.schema_type
            return _dumps(key), _dumps(value)
        case SchemaTombstone():
            key = {"keytype": "SCHEMA", "subject": record.subject, "version": record.version, "magic": 1}
            return _dumps(key), None
        case ConfigRecord():
            key = {"keytype": "CONFIG", "subject": record.subject, "magic": 0}
            return _dumps(key), None if record.level is None else _dumps({"compatibilityLevel": record.level})
        case DeleteSubjectRecord():
            key = {"keytype": "DELETE_SUBJECT", "subject": record.subject, "magic": 0}
            return _dumps(key), _dumps({"subject": record.subject, "version": record.version})
    raise TypeError(f"not a registry record: {record!r}")


def decode(key: bytes | None, value: bytes | None) -> Record | None:
    """The record for a topic message, None for key types the registry does not act on.

    Raises ValueError for a malformed message (the caller logs and skips it).
    """
    if key is None:
        raise ValueError("record without a key")
    parsed_key = json.loads(key)
    body = json.loads(value) if value is not None else None
    keytype = parsed_key.get("keytype")
    if keytype == "SCHEMA":
        subject, version = str(parsed_key["subject"]), int(parsed_key["version"])
        if body is None:
            return SchemaTombstone(subject, version)
        return SchemaRecord(subject=subject, version=version, schema_id=int(body["id"]),
                            schema=str(body["schema"]), deleted=bool(body.get("deleted", False)),
                            schema_type=str(body.get("schemaType") or AVRO).upper())
    if keytype == "CONFIG":
        subject = parsed_key.get("subject")
        level = None if body is None else body.get("compatibilityLevel")
        return ConfigRecord(None if subject is None else str(subject), None if level is None else str(level))
    if keytype == "DELETE_SUBJECT" and body is not None:
        return DeleteSubjectRecord(str(body["subject"]), int(body["version"]))
    return None
