"""Prove a pydantic event model and its Avro record describe the same data.

The ``.avsc`` is the source of truth; the model is hand-written for readable, typed Python. This module
lists every difference (missing or extra field, type, optionality, default) so a drift fails at start
and in CI rather than at the first produce. Pure functions, no I/O.
"""

from __future__ import annotations

import enum
import types
from datetime import date, datetime
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "string": (str,), "int": (int,), "long": (int,), "float": (float,), "double": (float,),
    "boolean": (bool,), "bytes": (bytes,),
}
_LOGICAL: dict[str, type] = {
    "timestamp-millis": datetime, "timestamp-micros": datetime, "date": date,
}


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` → (X, True); anything else → (annotation, False)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) < len(get_args(annotation)) and len(args) == 1:
            return args[0], True
    return annotation, False


def _type_differences(path: str, avro: Any, annotation: Any) -> list[str]:
    """Differences between one Avro type and one Python annotation, ``path`` naming the place."""
    if isinstance(avro, list):  # a union: only ["null", X] maps onto Optional[X]
        branches = [b for b in avro if b != "null"]
        inner, optional = _strip_optional(annotation)
        if len(branches) != 1 or "null" not in avro:
            return [f"{path}: only unions of null and one type are supported"]
        if not optional:
            return [f"{path}: schema allows null but the model's type is {annotation!r}"]
        return _type_differences(path, branches[0], inner)
    inner, optional = _strip_optional(annotation)
    if optional:
        return [f"{path}: model allows None but the schema does not"]
    if isinstance(avro, str):
        expected = _PRIMITIVES.get(avro)
        if expected is None:
            return [f"{path}: named type {avro!r} references are not supported in events"]
        return [] if annotation in expected else [f"{path}: schema {avro} vs model {annotation!r}"]
    if isinstance(avro, dict):
        return _complex_differences(path, avro, annotation)
    return [f"{path}: unsupported Avro type {avro!r}"]


def _complex_differences(path: str, avro: dict[str, Any], annotation: Any) -> list[str]:
    kind = avro["type"]
    logical = avro.get("logicalType")
    if logical in _LOGICAL:
        want = _LOGICAL[logical]
        return [] if annotation is want else [f"{path}: schema {logical} needs {want.__name__}"]
    if kind in _PRIMITIVES:
        return _type_differences(path, kind, annotation)
    if kind == "array":
        if get_origin(annotation) is not list:
            return [f"{path}: schema array vs model {annotation!r}"]
        return _type_differences(f"{path}[]", avro["items"], get_args(annotation)[0])
    if kind == "map":
        if get_origin(annotation) is not dict or get_args(annotation)[0] is not str:
            return [f"{path}: schema map vs model {annotation!r}"]
        return _type_differences(f"{path}{{}}", avro["values"], get_args(annotation)[1])
    if kind == "enum":
        return _enum_differences(path, avro["symbols"], annotation)
    if kind == "record":
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return [f"{path}: schema record {avro['name']} vs model {annotation!r}"]
        return record_differences(annotation, avro, prefix=f"{path}.")
    return [f"{path}: unsupported Avro type {kind!r}"]


def _enum_differences(path: str, symbols: list[str], annotation: Any) -> list[str]:
    if get_origin(annotation) is Literal:
        values = list(get_args(annotation))
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = [member.value for member in annotation]
    else:
        return [f"{path}: schema enum vs model {annotation!r}"]
    return [] if sorted(values) == sorted(symbols) else [f"{path}: enum symbols {symbols} vs model {values}"]


def record_differences(model: type[BaseModel], record: dict[str, Any], prefix: str = "") -> list[str]:
    """Every difference between ``model``'s fields and the Avro ``record``'s fields."""
    problems: list[str] = []
    avro_fields = {f["name"]: f for f in record["fields"]}
    for name in model.model_fields.keys() - avro_fields.keys():
        problems.append(f"{prefix}{name}: in the model, not in the schema")
    for name, avro_field in avro_fields.items():
        path = f"{prefix}{name}"
        info = model.model_fields.get(name)
        if info is None:
            problems.append(f"{path}: in the schema, not in the model")
            continue
        problems.extend(_type_differences(path, avro_field["type"], info.annotation))
        has_avro_default = "default" in avro_field
        if has_avro_default and info.is_required():
            problems.append(f"{path}: schema has a default ({avro_field['default']!r}), the model has none")
        elif not has_avro_default and not info.is_required():
            problems.append(f"{path}: the model has a default, the schema has none")
        elif has_avro_default and avro_field["default"] is None and info.default is not None:
            problems.append(f"{path}: schema default is null, model default is {info.default!r}")
    return problems


def model_schema_differences(model: type[BaseModel], parsed_schema: dict[str, Any]) -> list[str]:
    """Entry point: differences between an event model and its parsed (fastavro) record schema."""
    return record_differences(model, parsed_schema)
