"""Schema identity, the topic's record format and state folding — the parts a restart relies on."""

from __future__ import annotations

import json

import pytest

from choreo.registry.errors import InvalidSchema, InvalidVersion, SubjectNotFound, VersionNotFound
from choreo.registry.records import (
    ConfigRecord,
    DeleteSubjectRecord,
    SchemaRecord,
    SchemaTombstone,
    decode,
    encode,
)
from choreo.registry.schemas import check_schema_type, parse_avro
from choreo.registry.state import LATEST, RegistryState, parse_version

ORDER = {"type": "record", "name": "Order", "namespace": "shop",
         "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": {"type": "int"}, "default": 1}]}


def test_identity_ignores_formatting_key_order_and_namespace_spelling() -> None:
    reordered = {"fields": [{"type": "string", "name": "id"}, {"default": 1, "name": "qty", "type": "int"}],
                 "name": "shop.Order", "type": "record"}
    a, b = parse_avro(json.dumps(ORDER, indent=4)), parse_avro(json.dumps(reordered))
    assert a.identity == b.identity and a.text == b.text


def test_identity_keeps_what_changes_the_contract() -> None:
    other_default = json.loads(json.dumps(ORDER))
    other_default["fields"][1]["default"] = 2
    assert parse_avro(json.dumps(ORDER)).identity != parse_avro(json.dumps(other_default)).identity


@pytest.mark.parametrize("text, reason", [
    ("not json", "Invalid schema"),
    ('{"type": "record", "fields": []}', "Invalid schema"),
    ('{"type": "record", "name": "A", "fields": [{"name": "a", "type": "nope"}]}', "nope"),
    ('{"type": "record", "name": "A", "fields": [{"name": "a", "type": "int", "default": "x"}]}', "Default"),
    ("", "Empty schema"),
])
def test_invalid_schemas_are_42201_with_the_parsers_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidSchema, match=reason) as caught:
        parse_avro(text)
    assert caught.value.error_code == 42201


def test_only_avro_schema_type() -> None:
    assert check_schema_type(None) == check_schema_type("avro") == "AVRO"
    with pytest.raises(InvalidSchema, match="only AVRO is supported"):
        check_schema_type("PROTOBUF")


@pytest.mark.parametrize("text, expected",
                         [("latest", LATEST), ("-1", LATEST), ("1", 1), ("2147483647", 2**31 - 1)])
def test_versions(text: str, expected: object) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["0", "-2", "2147483648", "abc", "1.5", ""])
def test_invalid_versions_are_42202(text: str) -> None:
    with pytest.raises(InvalidVersion):
        parse_version(text)


@pytest.mark.parametrize("record", [
    SchemaRecord("orders-shop.Order", 3, 7, '"string"', deleted=True),
    SchemaTombstone("orders-shop.Order", 3),
    ConfigRecord(None, "FULL"),
    ConfigRecord("orders-shop.Order", None),
    DeleteSubjectRecord("orders-shop.Order", 2),
])
def test_records_round_trip_through_their_bytes(record: object) -> None:
    assert decode(*encode(record)) == record  # type: ignore[arg-type]


def test_keys_are_stable_for_compaction() -> None:
    live, _ = encode(SchemaRecord("s", 1, 1, '"string"'))
    deleted, _ = encode(SchemaRecord("s", 1, 1, '"string"', deleted=True))
    tombstone, value = encode(SchemaTombstone("s", 1))
    assert live == deleted == tombstone and value is None


def test_unknown_key_types_are_skipped() -> None:
    assert decode(b'{"keytype":"NOOP","magic":0}', None) is None


def test_folding_a_history() -> None:
    state = RegistryState()
    text = parse_avro(json.dumps(ORDER)).text
    for record in [SchemaRecord("a", 1, 1, text), SchemaRecord("b", 1, 1, text),
                   SchemaRecord("a", 2, 2, '"string"'), SchemaRecord("a", 1, 1, text, deleted=True),
                   ConfigRecord("a", "NONE")]:
        state.apply(record)
    assert state.subject_names() == ["a", "b"]
    assert [v.version for v in state.versions("a")] == [2]
    assert [v.version for v in state.versions("a", deleted=True)] == [1, 2]
    assert state.version("a", LATEST).schema_id == 2
    assert state.next_version("a") == 3 and state.max_id == 2
    assert state.level("a").value == "NONE" and state.level("b").value == "BACKWARD"
    with pytest.raises(VersionNotFound):
        state.version("a", 1)

    state.apply(SchemaTombstone("b", 1))
    state.apply(SchemaTombstone("a", 1))
    assert 1 not in state.schemas          # no version uses id 1 any more
    assert state.max_id == 2               # …but ids only grow
    with pytest.raises(SubjectNotFound):
        state.versions("b")
