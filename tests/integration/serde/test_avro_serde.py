"""AvroEventSerde against the real `choreo registry`: wire-compatible with confluent-kafka's official
Avro serdes byte for byte, schema evolution through the local reader schema, and the error contract
(poison → DeserializationError, registry down → InfrastructureError, bad payload or refused schema →
EventValidationError) with nothing wrong left cached after a failure.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import (
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    topic_record_subject_name_strategy,
)
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreo.errors import DeserializationError, EventValidationError, InfrastructureError
from choreo.events import EventBinding, bind
from choreo.kafka.embedded import free_port
from choreo.schemas.catalog import SchemaCatalog
from choreo.serde.avro import AvroEventSerde
from choreo.testing.fixtures import start_registry
from tests.support.echo import PING_SCHEMA, Ping, Pong, write_schemas

pytestmark = pytest.mark.timeout(60)

TOPIC_RECORD = {"subject.name.strategy": topic_record_subject_name_strategy}


@dataclass
class Env:
    client: SchemaRegistryClient
    ping: EventBinding
    pong: EventBinding

    def ctx(self, binding: EventBinding) -> SerializationContext:
        return SerializationContext(binding.topic, MessageField.VALUE)

    def official_serializer(self, schema: dict[str, Any] | str, **conf: Any) -> AvroSerializer:
        schema_str = schema if isinstance(schema, str) else json.dumps(schema)
        return AvroSerializer(self.client, schema_str, conf={**TOPIC_RECORD, **conf})


@pytest.fixture
def env(schema_registry_url: str, unique: Callable[[str], str], tmp_path: Path) -> Env:
    """Fresh topics (so fresh subjects) per test; Ping and Pong bound to the catalog written for them."""
    catalog = SchemaCatalog.load(write_schemas(tmp_path / "schemas", unique("pings"), unique("pongs")))
    return Env(SchemaRegistryClient({"url": schema_registry_url}), bind(Ping, catalog), bind(Pong, catalog))


def ping_schema(*, drop: str | None = None, add: dict[str, Any] | None = None) -> dict[str, Any]:
    """PING_SCHEMA with one field removed or one added: an older or newer writer of the same record."""
    schema = copy.deepcopy(PING_SCHEMA)
    schema["fields"] = [f for f in schema["fields"] if f["name"] != drop] + ([add] if add else [])
    return schema


# -- 1. interop with the official serdes ------------------------------------------------------------

def test_choreo_encoding_is_read_by_the_official_deserializer(env: Env) -> None:
    serde = AvroEventSerde(env.client)
    value = serde.encode(env.ping, Ping(key="k1", seq=7, note="hé"))
    # A fresh client: the reader knows nothing but the id in the record.
    official = AvroDeserializer(SchemaRegistryClient({"url": env.client.config()["url"]}))
    assert official(value, env.ctx(env.ping)) == {"key": "k1", "seq": 7, "note": "hé"}
    assert env.ping.schema.subject in env.client.get_subjects()


def test_official_encoding_is_read_by_choreo(env: Env) -> None:
    official = env.official_serializer(env.ping.schema.schema_str)
    values = [official({"key": "k1", "seq": 1, "note": None}, env.ctx(env.ping)),
              official({"key": "k2", "seq": -2, "note": "x" * 300}, env.ctx(env.ping))]
    serde = AvroEventSerde(SchemaRegistryClient({"url": env.client.config()["url"]}))
    assert [serde.decode(env.ping, v) for v in values] == [Ping(key="k1", seq=1),
                                                           Ping(key="k2", seq=-2, note="x" * 300)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(), seq=st.integers(-(2**63), 2**63 - 1), note=st.none() | st.text())
def test_choreo_encoding_equals_the_official_one_byte_for_byte(env: Env, key: str, seq: int,
                                                                note: str | None) -> None:
    event = Ping(key=key, seq=seq, note=note)
    official = env.official_serializer(env.ping.schema.schema_str)(event.to_avro(), env.ctx(env.ping))
    serde = AvroEventSerde(env.client)
    assert serde.encode(env.ping, event) == official
    assert serde.decode(env.ping, official) == event


# -- 2. schema evolution ----------------------------------------------------------------------------

def test_older_and_newer_writers_decode_through_the_local_reader_schema(env: Env) -> None:
    ctx = env.ctx(env.ping)
    older = env.official_serializer(ping_schema(drop="note"))({"key": "old", "seq": 1}, ctx)
    current = AvroEventSerde(env.client).encode(env.ping, Ping(key="cur", seq=2, note="n"))
    newer = env.official_serializer(ping_schema(add={"name": "extra", "type": "int", "default": 0}))(
        {"key": "new", "seq": 3, "note": "m", "extra": 42}, ctx)
    assert len({v[1:5] for v in (older, current, newer)}) == 3  # three writer schemas, one subject

    serde = AvroEventSerde(SchemaRegistryClient({"url": env.client.config()["url"]}))
    for _ in range(2):  # the second pass runs from the per-id cache
        assert serde.decode(env.ping, older) == Ping(key="old", seq=1, note=None)  # reader default
        assert serde.decode(env.ping, current) == Ping(key="cur", seq=2, note="n")
        assert serde.decode(env.ping, newer) == Ping(key="new", seq=3, note="m")  # extra field skipped
    # Same records the official deserializer gives with the same reader schema.
    official = AvroDeserializer(env.client, env.ping.schema.schema_str)
    assert [Ping.model_validate(official(v, ctx)) for v in (older, current, newer)] == [
        serde.decode(env.ping, v) for v in (older, current, newer)]


def test_a_writer_schema_the_reader_cannot_resolve_is_poison(env: Env) -> None:
    serde = AvroEventSerde(env.client)
    pong = serde.encode(env.pong, Pong(key="p", seq=1))
    with pytest.raises(DeserializationError, match="io.choreo.test.Ping"):
        serde.decode(env.ping, pong)  # a Pong's bytes read as a Ping: names do not match
    assert serde.decode(env.pong, pong) == Pong(key="p", seq=1)


# -- 3. poison bytes --------------------------------------------------------------------------------

def test_unknown_schema_id_is_a_deserialization_error_naming_it(env: Env) -> None:
    serde = AvroEventSerde(env.client)
    unknown = 2**31 - 7
    with pytest.raises(DeserializationError, match=f"unknown schema id {unknown}"):
        serde.decode(env.ping, b"\x00" + unknown.to_bytes(4, "big") + b"\x02k\x02\x00")


@pytest.mark.parametrize("value", [
    pytest.param(None, id="null"),
    pytest.param(b"", id="empty"),
    pytest.param(b"not avro at all", id="garbage"),
    pytest.param(b"\x00\x00\x00", id="short-header"),
    pytest.param(b"\x00\x00\x00\x00\x01", id="header-only"),
])
def test_values_outside_the_wire_format_are_deserialization_errors(env: Env, value: bytes | None) -> None:
    with pytest.raises(DeserializationError, match="not in the Confluent Avro wire format"):
        AvroEventSerde(env.client).decode(env.ping, value)


def test_corrupt_payloads_are_deserialization_errors_and_the_serde_still_works(env: Env) -> None:
    serde = AvroEventSerde(env.client)
    good = serde.encode(env.ping, Ping(key="k" * 40, seq=123456789, note="note"))
    header = good[:5]
    corrupt = {
        "wrong magic byte": b"\x01" + good[1:],
        "truncated": good[:12],
        "truncated in the last field": good[:-2],
        "huge string length": header + b"\xfe\xff\xff\xff\x0f" + b"k",
        "negative string length": header + b"\x01abc",
        "bad union branch": header + b"\x02k\x02\x09",
        "invalid utf-8": header + b"\x04\xff\xfe\x02\x00",
        "garbage after the header": header + bytes(range(255, 200, -1)),
    }
    for name, value in corrupt.items():
        with pytest.raises(DeserializationError):
            serde.decode(env.ping, value)
            pytest.fail(f"{name}: decoded")
    assert serde.decode(env.ping, good) == Ping(key="k" * 40, seq=123456789, note="note")


# -- 4. registry unreachable, then back -------------------------------------------------------------

def test_unreachable_registry_is_infrastructure_error_and_nothing_is_cached(
        env: Env, kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path) -> None:
    port = free_port()
    serde = AvroEventSerde(SchemaRegistryClient({"url": f"http://127.0.0.1:{port}", "max.retries": 0}))
    written = AvroEventSerde(env.client).encode(env.ping, Ping(key="k", seq=1))  # id in the session registry
    with pytest.raises(InfrastructureError, match="unreachable"):
        serde.encode(env.ping, Ping(key="k", seq=1))
    with pytest.raises(InfrastructureError, match="unreachable"):
        serde.decode(env.ping, written)

    # The registry comes up on that port (its own store): the same serde now registers and decodes.
    process, _ = start_registry(kafka_bootstrap, tmp_path, topic=unique("_schemas"), port=port)
    try:
        value = serde.encode(env.ping, Ping(key="k", seq=2))
        assert serde.decode(env.ping, value) == Ping(key="k", seq=2)
        fresh = SchemaRegistryClient({"url": f"http://127.0.0.1:{port}"})
        assert fresh.lookup_schema(env.ping.schema.subject, Schema(env.ping.schema.schema_str, "AVRO")
                                   ).schema_id == int.from_bytes(value[1:5], "big")
    finally:
        process.terminate()


# -- 5. invalid payloads ----------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # model_construct skipped validation on purpose
@pytest.mark.parametrize("fields, field_name", [
    pytest.param({"key": "k", "seq": "seven", "note": None}, "seq", id="wrong-type"),
    pytest.param({"key": "k", "seq": 2**63, "note": None}, "seq", id="long-overflow"),
    pytest.param({"key": None, "seq": 1, "note": None}, "key", id="null-for-string"),
    pytest.param({"key": "k", "seq": 1, "note": 5}, "note", id="union-mismatch"),
])
def test_invalid_payload_is_event_validation_error_naming_the_field(env: Env, fields: dict[str, Any],
                                                                     field_name: str) -> None:
    serde = AvroEventSerde(env.client)
    bad = Ping.model_construct(**fields)
    with pytest.raises(EventValidationError, match=field_name) as raised:
        serde.encode(env.ping, bad)
    assert raised.value.topic == env.ping.topic and raised.value.key == str(fields["key"])
    # The failure left nothing behind: the same serde encodes a valid event, readable by anyone.
    value = serde.encode(env.ping, Ping(key="k", seq=1))
    assert AvroDeserializer(env.client)(value, env.ctx(env.ping)) == {"key": "k", "seq": 1, "note": None}


# -- 6. the registry refuses the schema -------------------------------------------------------------

def test_unregistered_subject_without_auto_register_is_event_validation_error(env: Env) -> None:
    serde = AvroEventSerde(env.client, auto_register=False)
    with pytest.raises(EventValidationError, match=env.ping.schema.subject):
        serde.encode(env.ping, Ping(key="k", seq=1))
    # Registered out of band (``choreo schemas register``): the same serde now finds it.
    schema_id = env.client.register_schema(env.ping.schema.subject, Schema(env.ping.schema.schema_str, "AVRO"))
    value = serde.encode(env.ping, Ping(key="k", seq=1))
    assert value[:5] == b"\x00" + schema_id.to_bytes(4, "big")


def test_incompatible_subject_is_event_validation_error_naming_it(env: Env) -> None:
    incompatible = ping_schema(drop="seq", add={"name": "seq", "type": "string"})  # long → string: BACKWARD breaks
    env.client.register_schema(env.ping.schema.subject, Schema(json.dumps(incompatible), "AVRO"))
    with pytest.raises(EventValidationError, match=env.ping.schema.subject):
        AvroEventSerde(env.client).encode(env.ping, Ping(key="k", seq=1))


# -- writer schemas with references -----------------------------------------------------------------

def test_writer_with_references_decodes_through_the_official_fallback(env: Env) -> None:
    """`choreo registry` refuses schema references, so this one runs on confluent-kafka's own in-memory
    registry client (the only stand-in in this module): a Ping writer with an extra field whose type is
    a record registered under another subject."""
    client = MockSchemaRegistryClient({"url": "mock://references"})
    meta = {"type": "record", "name": "Meta", "namespace": "io.choreo.test",
            "fields": [{"name": "origin", "type": "string"}]}
    client.register_schema("meta-value", Schema(json.dumps(meta), "AVRO"))
    writer = Schema(json.dumps(ping_schema(add={"name": "meta", "type": "io.choreo.test.Meta"})), "AVRO",
                    [SchemaReference("io.choreo.test.Meta", "meta-value", 1)])
    value = AvroSerializer(client, writer, conf=TOPIC_RECORD)(
        {"key": "r", "seq": 9, "note": None, "meta": {"origin": "x"}}, env.ctx(env.ping))
    serde = AvroEventSerde(client)
    for _ in range(2):
        assert serde.decode(env.ping, value) == Ping(key="r", seq=9)
    # The plain path still serves writers without references, on the same serde.
    assert serde.decode(env.ping, serde.encode(env.ping, Ping(key="p", seq=1))) == Ping(key="p", seq=1)
