"""Shared pieces for the registry tests: a raw HTTP client and Avro schema texts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"


@pytest.fixture
def registry_http(schema_registry_url: str) -> Iterator[httpx.Client]:
    """Raw HTTP against the session's `choreo registry`, speaking Confluent's media type."""
    with httpx.Client(base_url=schema_registry_url, timeout=10.0,
                      headers={"Content-Type": MEDIA_TYPE, "Accept": MEDIA_TYPE}) as client:
        yield client


@pytest.fixture
def avro_record() -> Callable[..., str]:
    """``avro_record("Order", {"name": "id", "type": "string"}, ...)`` → the schema's JSON text."""
    def build(name: str, *fields: dict, namespace: str = "choreo.test") -> str:
        return json.dumps({"type": "record", "name": name, "namespace": namespace, "fields": list(fields)})
    return build
