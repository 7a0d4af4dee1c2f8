"""Test events for timers and joins, with per-test topics (schemas written into a temp folder).

``in_topic``: Start, Stop, Left — ``side_topic``: Right — ``out_topic``: Reminder, Both, Missing.
Left and Right live on different topics, so a join's parts arrive on different topics and partitions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from choreo import Event

NS = "io.choreo.test"


def _record(name: str, fields: list[tuple[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": NS, "doc": f"Test event {name}.",
            "fields": [{"name": f, "type": t, "doc": f} for f, t in fields]}


SCHEMAS: dict[str, list[dict[str, Any]]] = {
    "in": [_record("Start", [("key", "string"), ("seq", "long"), ("delay_ms", "long")]),
           _record("Stop", [("key", "string")]),
           _record("Left", [("key", "string"), ("x", "long")])],
    "side": [_record("Right", [("key", "string"), ("y", "long")])],
    "out": [_record("Reminder", [("key", "string"), ("seq", "long")]),
            _record("Both", [("key", "string"), ("x", "long"), ("y", "long")]),
            _record("Missing", [("key", "string"), ("have", "string")])],
}


class Start(Event, schema=f"{NS}.Start", key="key"):
    key: str
    seq: int
    delay_ms: int


class Stop(Event, schema=f"{NS}.Stop", key="key"):
    key: str


class Left(Event, schema=f"{NS}.Left", key="key"):
    key: str
    x: int


class Right(Event, schema=f"{NS}.Right", key="key"):
    key: str
    y: int


class Reminder(Event, schema=f"{NS}.Reminder", key="key"):
    key: str
    seq: int


class Both(Event, schema=f"{NS}.Both", key="key"):
    key: str
    x: int
    y: int


class Missing(Event, schema=f"{NS}.Missing", key="key"):
    key: str
    have: str


def write_timed_schemas(root: Path, topics: dict[str, str]) -> Path:
    """Write the schemas under ``topics["in"|"side"|"out"]`` folders; return the schemas dir."""
    for role, records in SCHEMAS.items():
        folder = root / topics[role]
        folder.mkdir(parents=True, exist_ok=True)
        for record in records:
            (folder / f"{record['name']}.avsc").write_text(json.dumps(record, indent=2))
    return root
