"""Typed events: pydantic models bound to an Avro record in ``schemas/``.

    class OrderPlaced(Event, schema="io.choreo.shop.OrderPlaced", key="order_id"):
        order_id: str
        ...

``schema`` names the Avro record (full or short name); ``key`` names the field holding the entity id,
which becomes the Kafka key. The topic comes from where the ``.avsc`` lives (``schemas/<topic>/``).
Binding to the catalog happens when a service starts, and a model out of step with its schema fails
there with every difference listed (see :mod:`choreo.schemas.drift`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from choreo.errors import ConfigError
from choreo.schemas.catalog import EventSchema, SchemaCatalog


class Event(BaseModel):
    """Base of every event class. Instances are immutable and validated on construction."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    avro_name: ClassVar[str]
    key_field: ClassVar[str]

    def __init_subclass__(cls, *, schema: str | None = None, key: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if schema is not None:
            cls.avro_name = schema
        if key is not None:
            cls.key_field = key

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not hasattr(cls, "avro_name"):
            return  # an abstract intermediate base
        if not hasattr(cls, "key_field"):
            raise ConfigError(f"{cls.__name__}: declare the entity id field, e.g. key='order_id'")
        if cls.key_field not in cls.model_fields:
            raise ConfigError(f"{cls.__name__}: key field {cls.key_field!r} is not a field of the model")

    def entity_key(self) -> str:
        """The entity id: the Kafka key, and ``ce_subject``."""
        return str(getattr(self, self.key_field))

    def to_avro(self) -> dict[str, Any]:
        """The record as a dict fastavro can write (datetimes stay datetimes)."""
        return self.model_dump(mode="python")


class EventBinding:
    """An event class joined to its schema: the topic it travels on and the subject it is registered under."""

    __slots__ = ("event_class", "schema")

    def __init__(self, event_class: type[Event], schema: EventSchema) -> None:
        self.event_class = event_class
        self.schema = schema

    @property
    def topic(self) -> str:
        return self.schema.topic

    @property
    def type_name(self) -> str:
        """The ``ce_type`` of this event: the Avro full name."""
        return self.schema.full_name


def bind(event_class: type[Event], catalog: SchemaCatalog) -> EventBinding:
    """Find ``event_class``'s schema in the catalog and prove the model matches it, or ConfigError."""
    from choreo.schemas.drift import model_schema_differences  # avoid an import cycle at module load

    if not isinstance(event_class, type) or not issubclass(event_class, Event):
        raise ConfigError(f"{event_class!r} is not an Event subclass")
    if not hasattr(event_class, "avro_name"):
        raise ConfigError(f"{event_class.__name__}: no schema declared (class X(Event, schema=..., key=...))")
    schema = catalog.get(event_class.avro_name)
    problems = model_schema_differences(event_class, schema.parsed)
    if problems:
        raise ConfigError(
            f"{event_class.__name__} does not match {schema.path}: " + "; ".join(problems)
        )
    return EventBinding(event_class, schema)
