"""Avro serde through the schema registry: Confluent wire format, TopicRecordNameStrategy subjects.

Wire format: magic byte 0, the 4-byte big-endian schema id, then the Avro binary body. Encoding writes
with the local ``.avsc`` under subject ``<topic>-<record full name>``; decoding reads with the local
``.avsc`` as the reader schema, so a consumer reads older or newer writers' records through Avro
schema resolution. Thread-safety: one instance per consumer thread (the caches are plain dicts).

Why not confluent-kafka's ``AvroSerializer``/``AvroDeserializer``: they run the data-contract rule
machinery on every record (subject-name lookup, ``expand_schema``, ``get_inline_tags``, rule
execution), none of which choreo uses. Measured per record: the official deserializer 12-19 µs vs
``fastavro.schemaless_reader`` 1.7-3.3 µs; the official serializer 4-6.3 µs vs ``schemaless_writer``
2.4-3 µs. Through this class (pydantic included) a Ping decodes in ≈ 3.7 µs instead of ≈ 13 µs and
encodes in ≈ 3.6 µs instead of ≈ 5.5 µs. So this module does the framing itself, asks the official
``SchemaRegistryClient`` once per subject (encode) / schema id (decode), and calls fastavro directly.
The wire format is unchanged: the bytes equal the official serializer's and the records the official
deserializer's (tests/integration/serde/test_avro_serde.py proves both, byte for byte). Writer schemas
with named ``references`` (not supported by ``choreo registry``) fall back to the official deserializer.
"""

from __future__ import annotations

import io
import json

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.types import Schema as ParsedSchema
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate
from pydantic import ValidationError as ModelValidationError

from choreo.errors import DeserializationError, EventValidationError, InfrastructureError
from choreo.events import Event, EventBinding

MAGIC_BYTE = 0
HEADER_SIZE = 5  # magic byte + 4-byte big-endian schema id


def is_transport_error(exc: BaseException) -> bool:
    """True for "could not reach the registry": the client raises its HTTP library's errors
    (httpx or httpx2, whichever is installed) or an OSError, not SchemaRegistryError."""
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in {"httpx", "httpx2", "httpcore"}


class _HasReferences:
    """Writer-schema cache marker: this id names other subjects, decode with the official deserializer."""


_HAS_REFERENCES = _HasReferences()


class AvroEventSerde:
    """Encode and decode the events of one service.

    The registry is asked once per subject (encode) and once per schema id (decode); only successes
    are cached, so a registry that was down or a subject registered later works on the next call.
    """

    def __init__(self, registry: SchemaRegistryClient, *, auto_register: bool = True) -> None:
        self._registry = registry
        self._auto_register = auto_register
        self._headers: dict[str, bytes] = {}  # subject → wire header (magic byte + schema id)
        self._writers: dict[int, ParsedSchema | _HasReferences] = {}  # schema id → parsed writer schema
        self._fallbacks: dict[str, AvroDeserializer] = {}  # type name → official deserializer (references)

    # -- encode -------------------------------------------------------------------------------------

    def encode(self, binding: EventBinding, event: Event) -> bytes:
        """Wire-format bytes of ``event``, written with the local schema.

        EventValidationError (nothing sent) if the payload does not fit the schema, naming the field,
        or if the registry refuses the schema for the subject (404/409/422); InfrastructureError if the
        registry cannot be reached or fails (5xx): not the event's fault, try again later.
        """
        try:
            header = self._headers.get(binding.subject) or self._register(binding)
            buffer = io.BytesIO()
            buffer.write(header)
            schemaless_writer(buffer, binding.schema.parsed, event.to_avro())
        except SchemaRegistryError as exc:
            if exc.http_status_code in (404, 409, 422):
                raise EventValidationError(
                    f"{binding.type_name}: the registry refused the schema for subject "
                    f"{binding.subject}: {exc}", topic=binding.topic, key=event.entity_key()) from exc
            raise InfrastructureError(f"schema registry unavailable: {exc}") from exc
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EventValidationError(f"{binding.type_name}: {self._explain(binding, event, exc)}",
                                       topic=binding.topic, key=event.entity_key()) from exc
        except Exception as exc:
            if is_transport_error(exc):  # not the event's fault: the batch is re-run when the registry is back
                raise InfrastructureError(f"schema registry unreachable: {exc!r}") from exc
            raise
        return buffer.getvalue()

    def _register(self, binding: EventBinding) -> bytes:
        """The subject's schema id (registered, or looked up without auto-register) as a wire header."""
        subject, schema = binding.subject, Schema(binding.schema.schema_str, "AVRO")
        if self._auto_register:
            schema_id: int | None = self._registry.register_schema(subject, schema)
        else:
            schema_id = self._registry.lookup_schema(subject, schema).schema_id
        if schema_id is None:
            raise InfrastructureError(f"schema registry returned no id for subject {subject}")
        header = self._headers[subject] = bytes([MAGIC_BYTE]) + schema_id.to_bytes(4, "big")
        return header

    @staticmethod
    def _explain(binding: EventBinding, event: Event, exc: Exception) -> str:
        """Name the failing field: fastavro's validator reports the path, its writer only the symptom."""
        try:
            validate(event.to_avro(), binding.schema.parsed, raise_errors=True)
        except AvroValidationError as invalid:
            return "; ".join(str(e) for e in invalid.errors) or str(invalid)
        return str(exc)

    # -- decode -------------------------------------------------------------------------------------

    def decode(self, binding: EventBinding, value: bytes | None) -> Event:
        """The typed event in ``value``; DeserializationError for bytes that are not one.

        Unknown schema ids and framing/schema mismatches are poison (the record is dead-lettered);
        an unreachable registry or a registry error (5xx) is an InfrastructureError (transient: try again).
        """
        if value is None or len(value) <= HEADER_SIZE or value[0] != MAGIC_BYTE:
            raise DeserializationError(
                f"{binding.type_name}: value is not in the Confluent Avro wire format "
                f"({'null' if value is None else f'{len(value)} bytes, first byte {value[:1]!r}'})")
        schema_id = int.from_bytes(value[1:HEADER_SIZE], "big")
        try:
            writer = self._writers.get(schema_id)
            if writer is None:
                writer = self._writer_schema(schema_id, binding)
            if writer is _HAS_REFERENCES:
                record = self._fallback(binding)(value, SerializationContext(binding.topic, MessageField.VALUE))
            else:
                body = io.BytesIO(value)
                body.seek(HEADER_SIZE)
                record = schemaless_reader(body, writer, binding.schema.parsed)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
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
            # model_validate's own body: the validator call, without its keyword handling (~0.4 µs a record).
            return binding.event_class.__pydantic_validator__.validate_python(record)  # type: ignore[no-any-return]
        except ModelValidationError as exc:
            raise DeserializationError(f"{binding.type_name}: decoded record does not fit the model: {exc}") from exc

    def _writer_schema(self, schema_id: int, binding: EventBinding) -> ParsedSchema | _HasReferences:
        """Fetch, parse and cache the writer schema of ``schema_id`` (registry errors propagate, uncached).

        A writer equal to the binding's reader schema is cached as that very object: fastavro then
        skips schema resolution after an identity-fast comparison.
        """
        schema = self._registry.get_schema(schema_id)
        if schema.schema_type not in (None, "AVRO") or schema.schema_str is None:
            raise ValueError(f"schema id {schema_id} is not an Avro schema ({schema.schema_type})")
        if schema.references:
            writer: ParsedSchema | _HasReferences = _HAS_REFERENCES
        else:
            writer = parse_schema(json.loads(schema.schema_str))
            if writer == binding.schema.parsed:
                writer = binding.schema.parsed
        self._writers[schema_id] = writer
        return writer

    def _fallback(self, binding: EventBinding) -> AvroDeserializer:
        """The official deserializer for writers with references (it resolves them through the registry)."""
        deserializer = self._fallbacks.get(binding.type_name)
        if deserializer is None:
            deserializer = self._fallbacks[binding.type_name] = AvroDeserializer(
                self._registry, binding.schema.schema_str)
        return deserializer
