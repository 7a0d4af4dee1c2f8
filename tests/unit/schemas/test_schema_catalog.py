"""SchemaCatalog: layout <dir>/<topic>/<Record>.avsc; a ConfigError naming the file for each bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from choreo.errors import ConfigError
from choreo.schemas.catalog import SchemaCatalog


def record(name: str, namespace: str = "io.test", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": namespace, "doc": "d",
            "fields": [{"name": "order_id", "type": "string", "doc": "d"}], **extra}


def write(root: Path, topic: str, filename: str, content: Any) -> Path:
    path = root / topic / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_loads_topic_folders_and_derives_subjects(tmp_path: Path) -> None:
    write(tmp_path, "orders", "OrderPlaced.avsc", record("OrderPlaced"))
    write(tmp_path, "payments", "PaymentAuthorized.avsc", record("PaymentAuthorized"))
    catalog = SchemaCatalog.load(tmp_path)
    assert len(catalog) == 2
    assert catalog.topics() == ["orders", "payments"]
    placed = catalog.get("OrderPlaced")
    assert placed is catalog.get("io.test.OrderPlaced")
    assert (placed.topic, placed.subject) == ("orders", "orders-io.test.OrderPlaced")


def test_files_outside_topic_folders_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, ".", "Loose.avsc", record("Loose"))
    write(tmp_path, "orders", "README.md", "not a schema")
    assert len(SchemaCatalog.load(tmp_path)) == 0


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist.*CHOREO_SCHEMAS_DIR"):
        SchemaCatalog.load(tmp_path / "nope")


def test_bad_json_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "orders", "OrderPlaced.avsc", '{"type": "record",')
    with pytest.raises(ConfigError, match="not readable JSON") as caught:
        SchemaCatalog.load(tmp_path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("content", [
    {"type": "enum", "name": "Status", "symbols": ["A"]},
    ["null", "string"],
    "\"string\"",
])
def test_a_schema_must_be_one_record(tmp_path: Path, content: Any) -> None:
    write(tmp_path, "orders", "Status.avsc", content)
    with pytest.raises(ConfigError, match="must be one Avro record"):
        SchemaCatalog.load(tmp_path)


def test_invalid_avro_is_reported(tmp_path: Path) -> None:
    bad = record("OrderPlaced")
    bad["fields"].append({"name": "total", "type": "money", "doc": "unknown type"})
    write(tmp_path, "orders", "OrderPlaced.avsc", bad)
    with pytest.raises(ConfigError, match="invalid Avro schema"):
        SchemaCatalog.load(tmp_path)


def test_file_name_must_be_the_record_name(tmp_path: Path) -> None:
    write(tmp_path, "orders", "Placed.avsc", record("OrderPlaced"))
    with pytest.raises(ConfigError, match=r"file name must be the record name \(OrderPlaced.avsc\)"):
        SchemaCatalog.load(tmp_path)


def test_a_record_defined_twice_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "orders", "OrderPlaced.avsc", record("OrderPlaced"))
    write(tmp_path, "legacy", "OrderPlaced.avsc", record("OrderPlaced"))
    with pytest.raises(ConfigError, match="io.test.OrderPlaced is defined twice"):
        SchemaCatalog.load(tmp_path)


def test_short_names_must_be_unambiguous(tmp_path: Path) -> None:
    write(tmp_path, "orders", "Created.avsc", record("Created", namespace="io.a"))
    write(tmp_path, "payments", "Created.avsc", record("Created", namespace="io.b"))
    catalog = SchemaCatalog.load(tmp_path)
    assert catalog.get("io.b.Created").topic == "payments"
    with pytest.raises(ConfigError, match="ambiguous"):
        catalog.get("Created")
    with pytest.raises(ConfigError, match="no schema for event type 'Missing'"):
        catalog.get("Missing")
