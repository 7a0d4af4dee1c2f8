"""The reference schemas in schemas/: loadable, documented, and following the event conventions."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest

from choreo.schemas.catalog import EventSchema, SchemaCatalog

SCHEMAS_DIR = Path(__file__).resolve().parents[3] / "schemas"
NAMESPACE = "io.choreo.shop"
TIMESTAMP_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}

EXPECTED = {
    "orders": {"OrderPlaced", "OrderCancelled", "OrderCompleted", "OrderExpired"},
    "payments": {"PaymentAuthorized", "PaymentDeclined", "PaymentRefunded"},
    "fraud": {"FraudCheckPassed", "FraudCheckFailed"},
    "inventory": {"StockReserved", "StockUnavailable", "StockReleased"},
    "shipping": {"ShipmentDispatched", "ShipmentFailed"},
    "notifications": {"CustomerNotified"},
}

CATALOG = SchemaCatalog.load(SCHEMAS_DIR)
EVENTS = list(CATALOG)


def _records(schema: Any) -> Iterator[dict[str, Any]]:
    """Every record schema inside ``schema``, the top-level one first."""
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            yield schema
            for item in schema["fields"]:
                yield from _records(item["type"])
        elif schema.get("type") == "array":
            yield from _records(schema["items"])
        elif schema.get("type") == "map":
            yield from _records(schema["values"])
    elif isinstance(schema, list):
        for branch in schema:
            yield from _records(branch)


def _raw(event: EventSchema) -> dict[str, Any]:
    return json.loads(event.schema_str)


def _non_null(type_: Any) -> Any:
    """The non-null branch of a ``["null", T]`` union, else the type itself."""
    if isinstance(type_, list):
        branches = [t for t in type_ if t != "null"]
        assert len(branches) == 1, f"only [null, T] unions are used: {type_}"
        return branches[0]
    return type_


def test_the_catalog_holds_every_reference_event() -> None:
    found: dict[str, set[str]] = {}
    for event in EVENTS:
        found.setdefault(event.topic, set()).add(event.name)
    assert found == EXPECTED


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.name)
def test_namespace_and_subject(event: EventSchema) -> None:
    assert event.full_name == f"{NAMESPACE}.{event.name}"
    assert event.subject == f"{event.topic}-{NAMESPACE}.{event.name}"


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.name)
def test_every_record_and_field_is_documented(event: EventSchema) -> None:
    for record in _records(_raw(event)):
        assert str(record.get("doc", "")).strip(), f"{event.path}: record {record['name']} has no doc"
        for item in record["fields"]:
            assert str(item.get("doc", "")).strip(), f"{event.path}: field {item['name']} has no doc"


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.name)
def test_order_id_is_the_first_field_and_a_string(event: EventSchema) -> None:
    first = _raw(event)["fields"][0]
    assert (first["name"], first["type"]) == ("order_id", "string")


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.name)
def test_field_type_conventions(event: EventSchema) -> None:
    for record in _records(_raw(event)):
        for item in record["fields"]:
            name, type_ = item["name"], _non_null(item["type"])
            if name.endswith("_at") or name == "deadline":
                assert type_ == TIMESTAMP_MILLIS, f"{event.name}.{name} must be timestamp-millis"
            if name.endswith("_minor"):
                assert type_ == "long", f"{event.name}.{name}: money is a long in minor units"
            if name.endswith("_id") or name == "currency":
                assert type_ == "string", f"{event.name}.{name} must be a string"
            if isinstance(item["type"], list):
                assert item["type"][0] == "null" and "default" in item and item["default"] is None, (
                    f"{event.name}.{name}: optional fields are [null, T] with default null"
                )


@pytest.mark.parametrize("event", [e for e in EVENTS if "amount_minor" in {f["name"] for f in e.fields}],
                         ids=lambda e: e.name)
def test_amounts_carry_their_currency(event: EventSchema) -> None:
    assert "currency" in {f["name"] for f in event.fields}


def test_order_placed_round_trips_through_avro() -> None:
    event = CATALOG.get("OrderPlaced")
    record = {
        "order_id": "o-1", "customer_id": "c-1",
        "lines": [{"sku": "sku-1", "quantity": 2, "unit_price_minor": 1250}],
        "total_minor": 2500, "currency": "EUR", "placed_at": 1_700_000_000_000,
    }
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, event.parsed, record)
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, event.parsed, event.parsed)
    assert decoded["lines"] == record["lines"]
    assert decoded["placed_at"].timestamp() * 1000 == record["placed_at"]
