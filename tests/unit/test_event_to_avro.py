"""Event.to_avro: the plain-field shortcut gives exactly what model_dump gives."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Annotated

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, computed_field, field_serializer, model_serializer

from choreo.events import Event
from services.events import ALL_EVENTS
from tests.support.echo import Ping, Pong


class Colour(enum.Enum):
    RED = "RED"


class Inner(BaseModel):
    x: int


class Plain(Event, schema="io.t.Plain", key="id"):
    id: str
    n: int
    price: Decimal
    at: dt.datetime
    note: str | None = None
    tags: list[str] = []
    scores: dict[str, float] = {}
    bounded: Annotated[int, Field(ge=0)] = 0


class Nested(Event, schema="io.t.Nested", key="id"):
    id: str
    inner: Inner


class WithEnum(Event, schema="io.t.WithEnum", key="id"):
    id: str
    colour: Colour


def test_plain_fields_take_the_shortcut_and_match_model_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    event = Plain(id="a", n=1, price=Decimal("1.50"), at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                  tags=["x"], scores={"s": 1.0})
    assert Plain._flat
    dumped = event.model_dump(mode="python")
    assert event.to_avro() == dumped
    event.to_avro()["n"] = 99  # a copy: the frozen model is not changed through it
    assert event.n == 1

    def no_model_dump(*args: object, **kwargs: object) -> dict[str, object]:
        raise AssertionError("to_avro() called model_dump: the shortcut was not taken")

    monkeypatch.setattr(Plain, "model_dump", no_model_dump)
    assert event.to_avro() == dumped  # the shortcut is what is taken, not model_dump


@pytest.mark.parametrize("event", [Nested(id="a", inner=Inner(x=1)), WithEnum(id="a", colour=Colour.RED)],
                         ids=lambda e: type(e).__name__)
def test_nested_models_and_enums_go_through_model_dump(event: Event) -> None:
    assert not type(event)._flat
    assert event.to_avro() == event.model_dump(mode="python")


def test_nested_values_are_dumped_to_dicts() -> None:
    assert Nested(id="a", inner=Inner(x=1)).to_avro() == {"id": "a", "inner": {"x": 1}}


def test_test_and_reference_events_classify_as_expected() -> None:
    assert Ping._flat and Pong._flat
    # Reference events with order lines hold nested models: they must not take the shortcut.
    assert {c.__name__ for c in ALL_EVENTS if not c._flat} >= {"OrderPlaced"}


class WithFieldSerializer(Event, schema="io.t.A", key="id"):
    id: str
    at: dt.datetime

    @field_serializer("at")
    def _millis(self, at: dt.datetime) -> int:
        return int(at.timestamp() * 1000)


class WithComputed(Event, schema="io.t.B", key="id"):
    id: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def double(self) -> str:
        return self.id * 2


class WithExcluded(Event, schema="io.t.C", key="id"):
    id: str
    secret: str = Field(default="x", exclude=True)


class WithAnnotatedSerializer(Event, schema="io.t.D", key="id"):
    id: str
    price: Annotated[Decimal, PlainSerializer(str)]
    prices: list[Annotated[Decimal, PlainSerializer(str)]] = []


class ByAlias(Event, schema="io.t.E", key="order_id"):
    model_config = ConfigDict(serialize_by_alias=True)
    order_id: str = Field(alias="orderId")


class WithModelSerializer(Event, schema="io.t.F", key="id"):
    id: str

    @model_serializer
    def _dump(self) -> dict[str, str]:
        return {"id": self.id.upper()}


# Field(exclude_if=...) came with pydantic 2.12; older versions would keep the argument as schema extra.
HAS_EXCLUDE_IF = tuple(int(part) for part in pydantic.VERSION.split(".")[:2]) >= (2, 12)
if HAS_EXCLUDE_IF:
    class WithExcludeIf(Event, schema="io.t.G", key="id"):
        id: str
        note: str = Field(default="", exclude_if=lambda note: note == "")


@pytest.mark.skipif(not HAS_EXCLUDE_IF, reason="Field(exclude_if=...) needs pydantic >= 2.12")
@pytest.mark.parametrize("note", ["", "kept"])
def test_a_field_excluded_by_a_condition_goes_through_model_dump(note: str) -> None:
    event = WithExcludeIf(id="a", note=note)
    assert not WithExcludeIf._flat
    assert event.to_avro() == event.model_dump(mode="python")


@pytest.mark.parametrize("event", [
    WithFieldSerializer(id="a", at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
    WithComputed(id="a"),
    WithExcluded(id="a"),
    WithAnnotatedSerializer(id="a", price=Decimal("1.5"), prices=[Decimal("2")]),
    ByAlias(orderId="a"),
    WithModelSerializer(id="a"),
], ids=lambda e: type(e).__name__)
def test_serialization_customisations_go_through_model_dump(event: Event) -> None:
    assert not type(event)._flat
    assert event.to_avro() == event.model_dump(mode="python")
