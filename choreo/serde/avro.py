"""Avro serde through the schema registry: Confluent wire format, TopicRecordNameStrategy subjects.

The confluent-kafka ``AvroSerializer``/``AvroDeserializer`` (fastavro inside) do the framing and the
registry look-ups; this layer picks one per event type, turns their failures into choreo's typed errors
and validates a payload against its schema only when encoding fails, to name the bad field.

Decoding uses the local ``.avsc`` as the reader schema, so a consumer reads older or newer writers'
records through Avro schema resolution. Thread-safety: one instance per consumer thread.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError
from fastavro.read import SchemaResolutionError
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate
from pydantic import ValidationError as ModelValidationError

from choreo.errors import DeserializationError, EventValidationError, InfrastructureError
from choreo.events import Event, EventBinding

MAGIC_BYTE = 0


def is_transport_error(exc: BaseException) -> bool:
    """True for "could not reach the registry": the client raises its HTTP library's errors
    (httpx or httpx2, whichever is installed) or an OSError, not SchemaRegistryError."""
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in {"httpx", "httpx2", "httpcore"}


def _event_to_dict(event: Event, _ctx: SerializationContext) -> dict[str, Any]:
    return event.to_avro()


class AvroEventSerde:
    """Encode and decode the events of one service. Serializers are built once per event type."""

    def __init__(self, registry: SchemaRegistryClient, *, auto_register: bool = True) -> None:
        self._registry = registry
        self._auto_register = auto_register
        self._serializers: dict[str, AvroSerializer] = {}
        self._deserializers: dict[str, AvroDeserializer] = {}
        self._contexts: dict[str, SerializationContext] = {}

    def _context(self, topic: str) -> SerializationContext:
        context = self._contexts.get(topic)
        if context is None:
            context = self._contexts[topic] = SerializationContext(topic, MessageField.VALUE)
        return context

    def _serializer(self, binding: EventBinding) -> AvroSerializer:
        serializer = self._serializers.get(binding.type_name)
        if serializer is None:
            serializer = AvroSerializer(
                self._registry, binding.schema.schema_str, to_dict=_event_to_dict,
                conf={"auto.register.schemas": self._auto_register,
                      "subject.name.strategy": topic_record_subject_name_strategy},
            )
            self._serializers[binding.type_name] = serializer
        return serializer

    def _deserializer(self, binding: EventBinding) -> AvroDeserializer:
        deserializer = self._deserializers.get(binding.type_name)
        if deserializer is None:
            deserializer = AvroDeserializer(self._registry, binding.schema.schema_str)
            self._deserializers[binding.type_name] = deserializer
        return deserializer

    def encode(self, binding: EventBinding, event: Event) -> bytes:
        """Wire-format bytes of ``event``; EventValidationError (nothing sent) if it does not fit."""
        try:
            data = self._serializer(binding)(event, self._context(binding.topic))
        except SchemaRegistryError as exc:
            if exc.http_status_code in (404, 409, 422):
                raise EventValidationError(
                    f"{binding.type_name}: the registry refused the schema for subject "
                    f"{binding.schema.subject}: {exc}", topic=binding.topic, key=event.entity_key()) from exc
            raise InfrastructureError(f"schema registry unavailable: {exc}") from exc
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EventValidationError(f"{binding.type_name}: {self._explain(binding, event, exc)}",
                                       topic=binding.topic, key=event.entity_key()) from exc
        except Exception as exc:
            if is_transport_error(exc):  # not the event's fault: the batch is re-run when the registry is back
                raise InfrastructureError(f"schema registry unreachable: {exc!r}") from exc
            raise
        assert data is not None
        return data

    @staticmethod
    def _explain(binding: EventBinding, event: Event, exc: Exception) -> str:
        """Name the failing field: fastavro's validator reports the path, its writer only the symptom."""
        try:
            validate(event.to_avro(), binding.schema.parsed, raise_errors=True)
        except AvroValidationError as invalid:
            return "; ".join(str(e) for e in invalid.errors) or str(invalid)
        return str(exc)

    def decode(self, binding: EventBinding, value: bytes | None) -> Event:
        """The typed event in ``value``; DeserializationError for bytes that are not one.

        Unknown schema ids and framing/schema mismatches are poison (the record is dead-lettered);
        an unreachable registry is an InfrastructureError (transient: try again).
        """
        if value is None or len(value) < 6 or value[0] != MAGIC_BYTE:
            raise DeserializationError(
                f"{binding.type_name}: value is not in the Confluent Avro wire format "
                f"({'null' if value is None else f'{len(value)} bytes, first byte {value[:1]!r}'})")
        try:
            record = self._deserializer(binding)(value, self._context(binding.topic))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                schema_id = int.from_bytes(value[1:5], "big")
                raise DeserializationError(f"unknown schema id {schema_id}: {exc}") from exc
            raise InfrastructureError(f"schema registry unavailable: {exc}") from exc
        except (SerializationError, SchemaResolutionError, ValueError, TypeError, KeyError, EOFError,
                IndexError) as exc:
            raise DeserializationError(f"{binding.type_name}: cannot decode Avro value: {exc}") from exc
        except Exception as exc:
            if is_transport_error(exc):
                raise InfrastructureError(f"schema registry unreachable: {exc!r}") from exc
            raise DeserializationError(f"{binding.type_name}: cannot decode Avro value: {exc!r}") from exc
        try:
            return binding.event_class.model_validate(record)
        except ModelValidationError as exc:
            raise DeserializationError(f"{binding.type_name}: decoded record does not fit the model: {exc}") from exc
