"""Compatibility decisions without a server: levels, directions, transitive vs latest-only."""

from __future__ import annotations

import json

import pytest

from choreo.registry.compat import CompatibilityLevel, check, pair_problems
from choreo.registry.errors import InvalidCompatibilityLevel
from choreo.registry.schemas import ParsedSchema, parse_avro

L = CompatibilityLevel


def record(*fields: dict) -> ParsedSchema:
    return parse_avro(json.dumps({"type": "record", "name": "Order", "namespace": "shop",
                                  "fields": list(fields)}))


ID = {"name": "id", "type": "string"}
NOTE_DEFAULT = {"name": "note", "type": "string", "default": ""}
NOTE_REQUIRED = {"name": "note", "type": "string"}

V1 = record(ID)                       # {id}
V2 = record(ID, NOTE_DEFAULT)         # {id, note=""}
V3 = record(ID, NOTE_REQUIRED)        # {id, note} — reads V2 data, not V1 data


def history(*schemas: ParsedSchema) -> list[tuple[int, ParsedSchema]]:
    return list(enumerate(schemas, start=1))


def test_backward_checks_only_the_latest_version() -> None:
    assert check(L.BACKWARD, V3, history(V1, V2)) == []


def test_backward_transitive_checks_every_version() -> None:
    problems = check(L.BACKWARD_TRANSITIVE, V3, history(V1, V2))
    assert problems[0].startswith("{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE'")
    assert "'note'" in problems[0] and "/fields/1" in problems[0]
    assert "{oldSchemaVersion: 1}" in problems
    assert problems[-1] == "{compatibility: 'BACKWARD_TRANSITIVE'}"


def test_new_field_without_default_breaks_backward_but_not_forward() -> None:
    assert check(L.BACKWARD, V3, history(V1))
    assert check(L.FORWARD, V3, history(V1)) == []   # old readers ignore the new field
    assert check(L.FULL, V3, history(V1))


def test_removing_a_field_without_default_breaks_forward_only() -> None:
    assert check(L.BACKWARD, V1, history(V3)) == []  # the new reader ignores the dropped field
    forward = check(L.FORWARD, V1, history(V3))
    assert forward and "old schema has no default value" in forward[0]


def test_forward_transitive_and_full_transitive_look_further_back() -> None:
    # Going back to V1 (no `note`): V2 readers default it, V3 readers need it.
    assert check(L.FORWARD, V1, history(V3, V2)) == []
    assert check(L.FORWARD_TRANSITIVE, V1, history(V3, V2))
    assert check(L.FULL, V2, history(V1)) == []
    assert check(L.FULL_TRANSITIVE, V2, history(V3, V1)) == []
    assert check(L.FULL_TRANSITIVE, V3, history(V1, V2))


def test_none_and_empty_history_accept_anything() -> None:
    unrelated = parse_avro('"string"')
    assert check(L.NONE, unrelated, history(V1)) == []
    assert check(L.FULL_TRANSITIVE, unrelated, []) == []
    assert check(L.BACKWARD, unrelated, history(V1))


def test_type_changes_follow_avro_promotion_rules() -> None:
    as_int = record({"name": "n", "type": "int"})
    as_long = record({"name": "n", "type": "long"})
    assert pair_problems(L.BACKWARD, as_long, as_int) == []          # int promotes to long
    [problem] = pair_problems(L.BACKWARD, as_int, as_long)
    assert "TYPE_MISMATCH" in problem and "/fields/0/type" in problem


def test_enum_symbols_and_renames() -> None:
    def enum(*symbols: str, name: str = "Status") -> ParsedSchema:
        return parse_avro(json.dumps({"type": "enum", "name": name, "symbols": list(symbols)}))
    assert pair_problems(L.BACKWARD, enum("A", "B"), enum("A")) == []
    assert "MISSING_ENUM_SYMBOLS" in pair_problems(L.BACKWARD, enum("A"), enum("A", "B"))[0]
    assert "NAME_MISMATCH" in pair_problems(L.BACKWARD, enum("A", name="Other"), enum("A"))[0]


def test_several_problems_are_all_reported() -> None:
    two_required = record(ID, NOTE_REQUIRED, {"name": "qty", "type": "int"})
    [problem] = [p for p in check(L.BACKWARD, two_required, history(V1)) if p.startswith("{errorType")]
    assert "note" in problem and "qty" in problem


@pytest.mark.parametrize("text", ["backward", "FULL_TRANSITIVE", " none "])
def test_level_parsing_is_case_insensitive(text: str) -> None:
    assert CompatibilityLevel.parse(text).value == text.strip().upper()


@pytest.mark.parametrize("text", ["SOMETIMES", "", None, 3])
def test_unknown_levels_are_42203(text: object) -> None:
    with pytest.raises(InvalidCompatibilityLevel) as caught:
        CompatibilityLevel.parse(text)
    assert caught.value.error_code == 42203 and caught.value.http_status == 422
