"""Compatibility over HTTP: 409 with Confluent's reasons, subject and global levels, the check endpoints."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

pytestmark = pytest.mark.timeout(60)

ID = {"name": "id", "type": "string"}
NOTE_DEFAULT = {"name": "note", "type": "string", "default": ""}
NOTE_REQUIRED = {"name": "note", "type": "string"}


def register(http: httpx.Client, subject: str, schema: str) -> httpx.Response:
    return http.post(f"/subjects/{subject}/versions", json={"schema": schema})


def test_new_field_without_default_is_refused_under_backward_and_accepted_under_none(
        registry_http: httpx.Client, unique: Callable[[str], str], avro_record: Callable[..., str]) -> None:
    http, subject = registry_http, unique("compat") + "-choreo.test.Order"
    assert register(http, subject, avro_record("Order", ID)).status_code == 200

    refused = register(http, subject, avro_record("Order", ID, NOTE_REQUIRED))
    assert refused.status_code == 409
    body = refused.json()
    assert body["error_code"] == 409
    message = body["message"]
    assert message.startswith(
        f'Schema being registered is incompatible with an earlier schema for subject "{subject}"')
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in message and "'note'" in message
    assert "{oldSchemaVersion: 1}" in message and "{compatibility: 'BACKWARD'}" in message
    assert http.get(f"/subjects/{subject}/versions").json() == [1]   # nothing was written

    assert http.put(f"/config/{subject}", json={"compatibility": "NONE"}).status_code == 200
    accepted = register(http, subject, avro_record("Order", ID, NOTE_REQUIRED))
    assert accepted.status_code == 200
    assert http.get(f"/subjects/{subject}/versions").json() == [1, 2]


def test_the_official_client_sees_409_with_reasons(schema_registry_url: str, unique: Callable[[str], str],
                                                   avro_record: Callable[..., str]) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    subject = unique("compat") + "-choreo.test.Order"
    client.register_schema(subject, Schema(avro_record("Order", ID), "AVRO"))
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, Schema(avro_record("Order", ID, NOTE_REQUIRED), "AVRO"))
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in refused.value.error_message


def test_transitive_levels_check_every_live_version(
        registry_http: httpx.Client, unique: Callable[[str], str], avro_record: Callable[..., str]) -> None:
    http = registry_http
    v1, v2, v3 = (avro_record("Order", ID), avro_record("Order", ID, NOTE_DEFAULT),
                  avro_record("Order", ID, NOTE_REQUIRED))
    latest_only, transitive = unique("latest") + "-choreo.test.O", unique("transitive") + "-choreo.test.O"
    for subject in (latest_only, transitive):
        assert register(http, subject, v1).status_code == 200
        assert register(http, subject, v2).status_code == 200
    http.put(f"/config/{transitive}", json={"compatibility": "BACKWARD_TRANSITIVE"})

    assert register(http, latest_only, v3).status_code == 200        # v3 reads v2 data
    refused = register(http, transitive, v3)                          # …but not v1 data
    assert refused.status_code == 409 and "{oldSchemaVersion: 1}" in refused.json()["message"]

    # Soft-deleting v1 takes it out of the transitive check.
    assert http.delete(f"/subjects/{transitive}/versions/1").status_code == 200
    assert register(http, transitive, v3).status_code == 200


def test_compatibility_endpoints(registry_http: httpx.Client, unique: Callable[[str], str],
                                 avro_record: Callable[..., str]) -> None:
    http, subject = registry_http, unique("check") + "-choreo.test.Order"
    v1, v2, v3 = (avro_record("Order", ID), avro_record("Order", ID, NOTE_DEFAULT),
                  avro_record("Order", ID, NOTE_REQUIRED))
    base = f"/compatibility/subjects/{subject}/versions"

    # Nothing registered yet: anything is compatible with "latest" / all versions.
    assert http.post(f"{base}/latest", json={"schema": v3}).json() == {"is_compatible": True}
    assert http.post(base, json={"schema": v3}).json() == {"is_compatible": True}
    assert http.post(f"{base}/1", json={"schema": v3}).json()["error_code"] == 40401

    register(http, subject, v1)
    register(http, subject, v2)
    assert http.post(f"{base}/latest", json={"schema": v3}).json() == {"is_compatible": True}
    assert http.post(f"{base}/2", json={"schema": v3}).json() == {"is_compatible": True}
    verbose = http.post(f"{base}/1", params={"verbose": "true"}, json={"schema": v3}).json()
    assert verbose["is_compatible"] is False
    assert any("READER_FIELD_MISSING_DEFAULT_VALUE" in m for m in verbose["messages"])
    assert http.post(f"{base}/1", json={"schema": v3}).json() == {"is_compatible": False}
    assert http.post(f"{base}/3", json={"schema": v3}).json()["error_code"] == 40402
    assert http.post(base, params={"verbose": "true"}, json={"schema": v3}).json() == {
        "is_compatible": True, "messages": []}

    http.put(f"/config/{subject}", json={"compatibility": "FULL_TRANSITIVE"})
    assert http.post(base, json={"schema": v3}).json() == {"is_compatible": False}
    bad = http.post(base, json={"schema": '{"type": "nonsense"}'})
    assert bad.status_code == 422 and bad.json()["error_code"] == 42201


def test_global_level_applies_to_subjects_without_their_own(
        registry_http: httpx.Client, unique: Callable[[str], str], avro_record: Callable[..., str]) -> None:
    http, subject = registry_http, unique("global") + "-choreo.test.Order"
    register(http, subject, avro_record("Order", ID, NOTE_DEFAULT))
    before = http.get("/config").json()["compatibilityLevel"]
    try:
        assert http.put("/config", json={"compatibility": "FORWARD"}).json() == {"compatibility": "FORWARD"}
        # FORWARD: old readers read new data — adding a required field is fine, dropping `id` is not.
        assert register(http, subject, avro_record("Order", ID, NOTE_DEFAULT, {"name": "n", "type": "int"})
                        ).status_code == 200
        assert register(http, subject, avro_record("Order", NOTE_DEFAULT)).status_code == 409
    finally:
        http.put("/config", json={"compatibility": before})
    assert http.delete("/config").json() == {"compatibilityLevel": before}
    assert http.get("/config").json() == {"compatibilityLevel": "BACKWARD"}
