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

import datetime as dt
import decimal
import types
import typing
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, PlainSerializer, WrapSerializer

from choreo.errors import ConfigError
from choreo.schemas.catalog import EventSchema, SchemaCatalog


@dataclass(frozen=True)
class JobEnd:
    """Declares that an event ends its job (read by the progress service, ``choreo progress``).

    ``status`` is the job's final status (``completed``, ``cancelled``, ``expired``, ``failed``); the
    ``statusReason`` is ``reason`` as given, or the value of the event's ``reason_field``.

        class OrderCancelled(Event, schema=..., key="order_id",
                             ends_job=JobEnd("cancelled", reason_field="reason")): ...
    """

    status: str
    reason: str | None = None
    reason_field: str | None = None


class Event(BaseModel):
    """Base of every event class. Instances are immutable and validated on construction.

    Class keywords: ``schema`` (the Avro record), ``key`` (the entity id field), and for job
    visibility ``ends_job`` (a :class:`JobEnd`) and ``job_deadline`` (the field of a job's root event
    that holds the job's deadline).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    avro_name: ClassVar[str]
    key_field: ClassVar[str]
    ends_job: ClassVar[JobEnd | None] = None
    job_deadline_field: ClassVar[str | None] = None
    _flat: ClassVar[bool] = False  # every field a plain value: to_avro() can skip model_dump()

    def __init_subclass__(cls, *, schema: str | None = None, key: str | None = None,
                          ends_job: JobEnd | None = None, job_deadline: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if schema is not None:
            cls.avro_name = schema
        if key is not None:
            cls.key_field = key
        if ends_job is not None:
            cls.ends_job = ends_job
        if job_deadline is not None:
            cls.job_deadline_field = job_deadline

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._flat = _dumps_as_is(cls)
        if not hasattr(cls, "avro_name"):
            return  # an abstract intermediate base
        if not hasattr(cls, "key_field"):
            raise ConfigError(f"{cls.__name__}: declare the entity id field, e.g. key='order_id'")
        if cls.key_field not in cls.model_fields:
            raise ConfigError(f"{cls.__name__}: key field {cls.key_field!r} is not a field of the model")
        for what, name in (("ends_job reason_field", cls.ends_job.reason_field if cls.ends_job else None),
                           ("job_deadline", cls.job_deadline_field)):
            if name is not None and name not in cls.model_fields:
                raise ConfigError(f"{cls.__name__}: {what} {name!r} is not a field of the model")

    def entity_key(self) -> str:
        """The entity id: the Kafka key, and ``ce_subject``."""
        return str(getattr(self, self.key_field))

    def to_avro(self) -> dict[str, Any]:
        """The record as a dict fastavro can write (datetimes stay datetimes).

        A model whose fields are all plain values (no nested models, no enums) is already that dict:
        its field values are copied as they are, ~7× cheaper than ``model_dump`` (one call per
        emitted event). A unit test proves both give the same dict.
        """
        if self._flat:
            return dict(self.__dict__)
        return self.model_dump(mode="python")


_PLAIN = (str, int, float, bool, bytes, type(None), dt.datetime, dt.date, dt.time, decimal.Decimal, uuid.UUID)


def _dumps_as_is(cls: type[BaseModel]) -> bool:
    """True if ``model_dump(mode="python")`` of ``cls`` is exactly its ``__dict__``.

    Any serialization customisation rules the shortcut out: field or model serializers (decorators
    or ``Annotated`` serializers), computed fields, excluded fields (``exclude``, and ``exclude_if`` on
    pydantic 2.12+), dumping by alias; so does a field type that is not plain (see :func:`_is_plain`).
    """
    decorators = cls.__pydantic_decorators__
    if decorators.field_serializers or decorators.model_serializers or cls.model_computed_fields:
        return False
    if cls.model_config.get("serialize_by_alias"):
        return False
    for field in cls.model_fields.values():
        if field.exclude or getattr(field, "exclude_if", None) is not None or any(
                isinstance(m, PlainSerializer | WrapSerializer) for m in field.metadata):
            return False
        if not _is_plain(field.annotation):
            return False
    return True


def _is_plain(annotation: Any) -> bool:
    """True if values of ``annotation`` are written by fastavro as they are in the model.

    Plain: str, int, float, bool, bytes, None, datetime/date/time, Decimal, UUID, and unions, lists
    and dicts of those. Anything else (a nested model, an enum, nested ``Annotated`` metadata, an
    unknown type) needs model_dump. Top-level ``Annotated`` metadata is on the field, checked above.
    """
    origin = typing.get_origin(annotation)
    if origin is None:
        return isinstance(annotation, type) and annotation in _PLAIN
    if origin is typing.Annotated:
        return False  # nested metadata may change how values dump: leave it to model_dump
    if origin in (typing.Union, types.UnionType, list, dict):
        return all(_is_plain(arg) for arg in typing.get_args(annotation))
    return False


class EventBinding:
    """An event class joined to its schema: the topic it travels on and the subject it is registered under.

    Its attributes are plain slots filled once: the runtime reads them for every record.
    """

    __slots__ = ("event_class", "schema", "topic", "type_name", "type_bytes", "subject")

    def __init__(self, event_class: type[Event], schema: EventSchema) -> None:
        self.event_class = event_class
        self.schema = schema
        self.topic = schema.topic
        self.type_name = schema.full_name  # the ``ce_type`` of this event: the Avro full name
        self.type_bytes = self.type_name.encode()
        self.subject = schema.subject  # registry subject (TopicRecordNameStrategy)


def event_classes() -> list[type[Event]]:
    """Every Event subclass loaded in this process (for looking one up by its schema's name)."""
    found: list[type[Event]] = []
    pending = list(Event.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls not in found:
            found.append(cls)
            pending.extend(cls.__subclasses__())
    return found


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
