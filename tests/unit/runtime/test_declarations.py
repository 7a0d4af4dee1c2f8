"""Bad declarations fail at registration or bind time with a message that names the problem."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from choreo import ConfigError, Event, Service
from choreo.schemas.catalog import SchemaCatalog
from choreo.schemas.drift import model_schema_differences
from services.events import OrderPlaced
from tests.support.echo import Ping, write_schemas


@pytest.fixture
def catalog(tmp_path: Path) -> SchemaCatalog:
    return SchemaCatalog.load(write_schemas(tmp_path, "pings", "pongs"))


def test_two_handlers_for_one_event_type() -> None:
    service = Service("svc")
    service.handler(Ping)(lambda e, c: None)
    with pytest.raises(ConfigError, match="two handlers for Ping"):
        service.handler(Ping)(lambda e, c: None)


def test_handler_for_a_non_event() -> None:
    with pytest.raises(ConfigError, match="needs an Event subclass"):
        Service("svc").handler(dict)  # type: ignore[arg-type]


def test_bad_service_name() -> None:
    with pytest.raises(ConfigError, match="service name"):
        Service("Not Valid!")


def test_unknown_event_type_fails_at_bind(catalog: SchemaCatalog) -> None:
    class Missing(Event, schema="io.choreo.test.Missing", key="id"):
        id: str

    service = Service("svc")
    service.handler(Missing)(lambda e, c: None)
    with pytest.raises(ConfigError, match="no schema for event type 'io.choreo.test.Missing'"):
        service.bind(catalog)


def test_event_without_key_is_rejected() -> None:
    with pytest.raises(ConfigError, match="declare the entity id field"):
        class NoKey(Event, schema="io.choreo.test.NoKey"):
            id: str


def test_drifted_model_fails_at_bind(catalog: SchemaCatalog) -> None:
    class Ping2(Event, schema="io.choreo.test.Ping", key="key"):
        key: str
        seq: str  # schema says long
        extra: int = 0

    service = Service("svc")
    service.handler(Ping2)(lambda e, c: None)
    with pytest.raises(ConfigError) as error:
        service.bind(catalog)
    message = str(error.value)
    assert "seq: schema long vs model <class 'str'>" in message
    assert "extra: in the model, not in the schema" in message
    assert "note: in the schema, not in the model" in message


def test_service_without_handlers(catalog: SchemaCatalog) -> None:
    with pytest.raises(ConfigError, match="declares no handlers"):
        Service("empty").bind(catalog)


def test_drift_detects_optional_and_nested_mismatch() -> None:
    schema = {"type": "record", "name": "X", "fields": [
        {"name": "a", "type": ["null", "string"], "default": None},
        {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "I", "fields": [
            {"name": "n", "type": "int"}]}}},
    ]}
    from pydantic import BaseModel

    class Item(BaseModel):
        n: str

    class X(BaseModel):
        a: str
        when: datetime
        items: list[Item]

    problems = model_schema_differences(X, schema)
    assert any(p.startswith("a: schema allows null") for p in problems)
    assert any(p.startswith("a: schema has a default") for p in problems)
    assert any(p.startswith("items[].n: schema int") for p in problems)
    assert not any(p.startswith("when") for p in problems)


def test_reference_event_validates_on_construction() -> None:
    with pytest.raises(ValueError, match="lines"):
        OrderPlaced(order_id="o", customer_id="c", lines=[], total_minor=0, currency="EUR",
                    placed_at=datetime(2026, 1, 1))
