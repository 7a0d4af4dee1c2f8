"""Avro schema text → a parsed schema with a stable identity.

Identity is the *full* parsed form, not Avro's Parsing Canonical Form: PCF drops defaults, docs,
aliases and logical types, and two schemas that differ in a default are different contracts (a default
decides compatibility). So, like Confluent (which compares Avro Java's ``Schema.toString()``), two texts
are the same schema when the avro library parses them to the same JSON: whitespace, key order,
``{"type": "int"}`` vs ``"int"`` and namespace spelling do not matter; anything the library keeps does.

Schemas are parsed twice: by ``avro`` (the compatibility checker needs its objects) and by ``fastavro``
(what confluent-kafka's serializers use), so a schema the registry accepts is one clients can use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import avro.schema
import fastavro.schema

from choreo.registry.errors import InvalidSchema

AVRO = "AVRO"
SUPPORTED_TYPES = (AVRO,)


@dataclass(frozen=True)
class ParsedSchema:
    """A valid Avro schema. ``text`` is what the registry serves; ``identity`` decides sameness."""

    text: str
    identity: str
    avro: avro.schema.Schema = field(compare=False, repr=False)


def _dumps(value: object, *, sort_keys: bool) -> str:
    return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)


def parse_avro(text: str) -> ParsedSchema:
    """Parse ``text`` as an Avro schema; InvalidSchema (42201) naming the parser's complaint otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidSchema("Empty schema")
    try:
        parsed = avro.schema.parse(text)
    except Exception as exc:  # the parser raises SchemaParseException, TypeError, KeyError… on garbage
        raise InvalidSchema(f"Invalid schema: {_reason(exc)}") from None
    try:
        fastavro.schema.parse_schema(json.loads(text), _write_hint=False)
    except Exception as exc:
        raise InvalidSchema(f"Invalid schema: {_reason(exc)}") from None
    as_json = parsed.to_json()
    return ParsedSchema(text=_dumps(as_json, sort_keys=False), identity=_dumps(as_json, sort_keys=True),
                        avro=parsed)


def check_schema_type(schema_type: object) -> str:
    """The normalized schema type; InvalidSchema unless it is AVRO (the only one choreo supports)."""
    if schema_type is None:
        return AVRO
    if not isinstance(schema_type, str) or schema_type.upper() != AVRO:
        raise InvalidSchema(f"Invalid schema type {schema_type!r}: only AVRO is supported by choreo registry")
    return AVRO


def _reason(exc: Exception) -> str:
    message = str(exc).strip() or type(exc).__name__
    return message if len(message) <= 300 else message[:297] + "..."
