"""Every reference event class matches its .avsc, and every .avsc has a class."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreo.events import bind
from choreo.schemas.catalog import SchemaCatalog
from services.events import ALL_EVENTS

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@pytest.mark.parametrize("event_class", ALL_EVENTS, ids=lambda c: c.__name__)
def test_event_class_matches_its_schema(event_class) -> None:
    binding = bind(event_class, SchemaCatalog.load(SCHEMAS))  # raises ConfigError listing any drift
    assert binding.event_class is event_class


def test_every_schema_has_an_event_class() -> None:
    catalog = SchemaCatalog.load(SCHEMAS)
    assert {s.full_name for s in catalog} == {c.avro_name for c in ALL_EVENTS}
