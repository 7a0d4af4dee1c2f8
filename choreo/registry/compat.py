"""Compatibility levels and decisions, made by ``avro.compatibility.ReaderWriterCompatibilityChecker``.

BACKWARD: the new schema (reader) reads data written with the previous one. FORWARD: the previous schema
reads data written with the new one. FULL: both. A ``*_TRANSITIVE`` level checks every live version,
the others only the latest. Messages follow Confluent's verbose format, newest failing version only.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from choreo.registry.errors import InvalidCompatibilityLevel
from choreo.registry.schemas import ParsedSchema


class CompatibilityLevel(StrEnum):
    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @classmethod
    def parse(cls, value: object) -> CompatibilityLevel:
        """Case-insensitive; InvalidCompatibilityLevel (42203) for anything else."""
        if isinstance(value, str):
            try:
                return cls(value.strip().upper())
            except ValueError:
                pass
        raise InvalidCompatibilityLevel(value)

    @property
    def transitive(self) -> bool:
        return self.name.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        return self.name.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        return self.name.startswith(("FORWARD", "FULL"))


DEFAULT_LEVEL = CompatibilityLevel.BACKWARD

# Human wording per avro incompatibility type; {reader}/{writer} are "new" or "old".
_WORDING = {
    "reader_field_missing_default_value":
        "The field {message} at path '{location}' in the {reader} schema has no default value "
        "and is missing in the {writer} schema",
    "type_mismatch": "The type at path '{location}' in the {reader} schema does not match "
                     "the {writer} schema: {message}",
    "name_mismatch": "The name at path '{location}' in the {reader} schema does not match "
                     "the {writer} schema ({message})",
    "missing_enum_symbols": "The {reader} schema's enum at path '{location}' is missing symbols {message} "
                            "of the {writer} schema",
    "missing_union_branch": "The {reader} schema's union at path '{location}' lacks a branch of the "
                            "{writer} schema: {message}",
    "fixed_size_mismatch": "The size of the fixed type at path '{location}' differs between the {reader} "
                           "and {writer} schemas: {message}",
}


def reader_writer_problems(reader: ParsedSchema, writer: ParsedSchema, *, reader_is_new: bool) -> list[str]:
    """Why ``reader`` cannot read what ``writer`` wrote, as Confluent {errorType:…} lines; [] if it can."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader.avro, writer.avro)
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    roles = {"reader": "new" if reader_is_new else "old", "writer": "old" if reader_is_new else "new"}
    kinds = [kind.value for kind in result.incompatibilities]
    messages, locations = sorted(result.messages), sorted(result.locations)
    # avro merges messages and locations into sets, so kind↔message pairing survives only for one problem.
    if len(kinds) == 1 and len(messages) == 1 and len(locations) == 1:
        description = _WORDING.get(kinds[0], "{message} at path '{location}'").format(
            message=_quote(kinds[0], messages[0]), location=locations[0], **roles)
        details = [(kinds[0], description, messages[0])]
    else:
        description = (f"The {roles['reader']} schema cannot read data written with the {roles['writer']} "
                       f"schema: {', '.join(messages)} at paths {', '.join(repr(loc) for loc in locations)}")
        details = [(kind, description, ", ".join(messages)) for kind in dict.fromkeys(kinds)]
    return [f"{{errorType:'{kind.upper()}', description:'{text}', additionalInfo:'{info}'}}"
            for kind, text, info in details]


def _quote(kind: str, message: str) -> str:
    return f"'{message}'" if kind == "reader_field_missing_default_value" else message


def pair_problems(level: CompatibilityLevel, new: ParsedSchema, old: ParsedSchema) -> list[str]:
    """Problems between ``new`` and one ``old`` schema under ``level`` ([] = compatible)."""
    problems: list[str] = []
    if level.backward:
        problems += reader_writer_problems(new, old, reader_is_new=True)
    if level.forward:
        problems += reader_writer_problems(old, new, reader_is_new=False)
    return problems


def check(level: CompatibilityLevel, new: ParsedSchema,
          previous: Sequence[tuple[int, ParsedSchema]]) -> list[str]:
    """Check ``new`` against ``previous`` (live versions, oldest first) under ``level``.

    Returns Confluent-style messages, empty when compatible: the problems with the newest failing
    version, then ``{oldSchemaVersion: n}``, ``{oldSchema: '…'}`` and ``{compatibility: 'LEVEL'}``.
    Non-transitive levels look at the latest version only; NONE and an empty subject always pass.
    """
    if level is CompatibilityLevel.NONE or not previous:
        return []
    candidates = list(previous) if level.transitive else [previous[-1]]
    for version, old in reversed(candidates):
        problems = pair_problems(level, new, old)
        if problems:
            return [*problems, f"{{oldSchemaVersion: {version}}}", f"{{oldSchema: '{old.text}'}}",
                    f"{{compatibility: '{level.value}'}}"]
    return []
