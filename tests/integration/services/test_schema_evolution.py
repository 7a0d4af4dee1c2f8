"""The fields added for the shop (deadline, PaymentAuthorized.lines) keep every schema BACKWARD
compatible: the registry accepts each new schema over the version without them (as `choreo schemas
check` would against a registry holding the old ones)."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from choreo.schemas.catalog import SchemaCatalog
from tests.integration.services.shop import SCHEMAS

ADDED = {"OrderPlaced": {"deadline"}, "PaymentAuthorized": {"lines", "deadline"},
         "FraudCheckPassed": {"deadline"}, "StockReserved": {"deadline"}}


@pytest.mark.parametrize("name", sorted(ADDED))
def test_added_fields_are_backward_compatible(schema_registry_url: str, name: str) -> None:
    event = SchemaCatalog.load(SCHEMAS).get(name)
    new = json.loads(event.schema_str)
    old = {**new, "fields": [f for f in new["fields"] if f["name"] not in ADDED[name]]}
    assert {f["name"] for f in new["fields"]} - {f["name"] for f in old["fields"]} == ADDED[name]
    assert all("default" in f for f in new["fields"] if f["name"] in ADDED[name])
    client = SchemaRegistryClient({"url": schema_registry_url})
    subject = f"evolution-{uuid.uuid4().hex[:8]}-{event.full_name}"
    client.register_schema(subject, Schema(json.dumps(old), "AVRO"))
    assert client.test_compatibility(subject, Schema(event.schema_str, "AVRO")) is True
