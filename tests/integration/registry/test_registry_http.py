"""Raw HTTP: every Confluent error code, bad input answered clearly, and the server keeps serving."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

pytestmark = pytest.mark.timeout(60)

ID = {"name": "id", "type": "string"}
QTY = {"name": "qty", "type": "int"}
QTY_DEFAULT = {"name": "qty", "type": "int", "default": 0}


def error(response: httpx.Response, status: int, code: int, *fragments: str) -> str:
    """Assert Confluent's error body; return its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/vnd.schemaregistry.v1+json")
    body = response.json()
    assert body["error_code"] == code, body
    for fragment in fragments:
        assert fragment in body["message"], body
    return body["message"]


def register(http: httpx.Client, subject: str, schema: str, **extra: object) -> httpx.Response:
    return http.post(f"/subjects/{subject}/versions", json={"schema": schema, **extra})


@pytest.fixture
def subject(registry_http: httpx.Client, unique: Callable[[str], str],
            avro_record: Callable[..., str]) -> str:
    """A subject holding one version (id only)."""
    name = unique("http") + "-choreo.test.Order"
    assert register(registry_http, name, avro_record("Order", ID)).status_code == 200
    return name


def test_not_found_codes(registry_http: httpx.Client, subject: str, unique: Callable[[str], str],
                         avro_record: Callable[..., str]) -> None:
    http, nobody = registry_http, unique("nobody")
    error(http.get(f"/subjects/{nobody}/versions"), 404, 40401, nobody)
    error(http.get(f"/subjects/{nobody}/versions/latest"), 404, 40401)
    error(http.post(f"/subjects/{nobody}", json={"schema": avro_record("Order", ID)}), 404, 40401)
    error(http.get(f"/subjects/{subject}/versions/99"), 404, 40402, "99")
    error(http.get("/schemas/ids/987654"), 404, 40403, "987654")
    error(http.get("/schemas/ids/987654/subjects"), 404, 40403)
    error(http.get("/schemas/ids/not-a-number"), 404, 40403)
    error(http.post(f"/subjects/{subject}", json={"schema": avro_record("Other", ID)}), 404, 40403)
    error(http.get(f"/config/{subject}"), 404, 40408)
    error(http.get("/no/such/path"), 404, 404)
    error(http.put("/schemas/types"), 405, 405)


def test_lookup_and_read_endpoints(registry_http: httpx.Client, subject: str,
                                   avro_record: Callable[..., str]) -> None:
    http = registry_http
    found = http.post(f"/subjects/{subject}", json={"schema": avro_record("Order", ID)}).json()
    assert found["subject"] == subject and found["version"] == 1
    by_version = http.get(f"/subjects/{subject}/versions/1").json()
    assert by_version == {**found, "schema": by_version["schema"]} and by_version["id"] == found["id"]
    assert http.get(f"/subjects/{subject}/versions/latest").json() == by_version
    assert http.get(f"/subjects/{subject}/versions/-1").json() == by_version
    raw = http.get(f"/subjects/{subject}/versions/1/schema")
    assert json.loads(raw.text) == json.loads(by_version["schema"])
    assert http.get(f"/schemas/ids/{found['id']}").json() == {"schema": by_version["schema"]}
    assert json.loads(http.get(f"/schemas/ids/{found['id']}/schema").text)["name"] == "Order"
    assert subject in http.get(f"/schemas/ids/{found['id']}/subjects").json()
    assert {"subject": subject, "version": 1} in http.get(f"/schemas/ids/{found['id']}/versions").json()
    assert http.get("/schemas/types").json() == ["AVRO"]
    assert http.get("/mode").json() == {"mode": "READWRITE"}
    assert http.get(f"/mode/{subject}").json() == {"mode": "READWRITE"}
    assert http.get(f"/subjects/{subject}/versions/1/referencedby").json() == []
    prefix = subject.split("-")[0] + "-" + subject.split("-")[1]
    assert http.get("/subjects", params={"subjectPrefix": prefix}).json() == [subject]
    # application/json is accepted as well as Confluent's media type.
    plain = http.post(f"/subjects/{subject}", json={"schema": avro_record("Order", ID)},
                      headers={"Content-Type": "application/json"})
    assert plain.status_code == 200


def test_delete_codes_soft_then_permanent(registry_http: httpx.Client, subject: str,
                                          avro_record: Callable[..., str]) -> None:
    http = registry_http
    assert register(http, subject, avro_record("Order", ID, QTY_DEFAULT)).status_code == 200
    permanent = {"permanent": "true"}
    error(http.delete(f"/subjects/{subject}/versions/1", params=permanent), 404, 40407, "Version 1")
    assert http.delete(f"/subjects/{subject}/versions/1").json() == 1
    error(http.delete(f"/subjects/{subject}/versions/1"), 404, 40406, "soft deleted")
    error(http.get(f"/subjects/{subject}/versions/1"), 404, 40402)
    assert http.get(f"/subjects/{subject}/versions/1", params={"deleted": "true"}).json()["version"] == 1
    assert http.get(f"/subjects/{subject}/versions").json() == [2]
    assert http.get(f"/subjects/{subject}/versions", params={"deleted": "true"}).json() == [1, 2]

    error(http.delete(f"/subjects/{subject}", params={"permanent": "true"}), 404, 40405, subject)
    assert http.delete(f"/subjects/{subject}").json() == [2]
    error(http.delete(f"/subjects/{subject}"), 404, 40404, subject)
    assert subject not in http.get("/subjects").json()
    assert subject in http.get("/subjects", params={"deleted": "true"}).json()
    error(http.get(f"/subjects/{subject}/versions/latest"), 404, 40401)
    assert http.delete(f"/subjects/{subject}", params={"permanent": "true"}).json() == [1, 2]
    error(http.delete(f"/subjects/{subject}"), 404, 40401)
    assert subject not in http.get("/subjects", params={"deleted": "true"}).json()


@pytest.mark.parametrize("version", ["0", "-2", "abc", "2147483648", "1.5"])
def test_invalid_versions_are_42202(registry_http: httpx.Client, subject: str, version: str,
                                    avro_record: Callable[..., str]) -> None:
    error(registry_http.get(f"/subjects/{subject}/versions/{version}"), 422, 42202, version)
    error(registry_http.delete(f"/subjects/{subject}/versions/{version}"), 422, 42202)
    error(registry_http.post(f"/compatibility/subjects/{subject}/versions/{version}",
                             json={"schema": avro_record("Order", ID)}), 422, 42202)


def test_invalid_schemas_are_42201(registry_http: httpx.Client, subject: str,
                                   avro_record: Callable[..., str]) -> None:
    http = registry_http
    error(register(http, subject, '{"type": "record", "name": "Broken", "fields": [{"name": "a"'), 422, 42201,
          "Invalid schema")
    unknown_type = '{"type": "record", "name": "A", "fields": [{"name": "a", "type": "nope"}]}'
    error(register(http, subject, unknown_type), 422, 42201, "nope")
    error(register(http, subject, '{"type": "record", "fields": []}'), 422, 42201)
    error(register(http, subject, ""), 422, 42201, "Empty schema")
    error(http.post(f"/subjects/{subject}/versions", json={"schemaType": "AVRO"}), 422, 42201, "Empty schema")
    error(register(http, subject, '{"type": "object"}', schemaType="JSON"), 422, 42201,
          "only AVRO is supported")
    error(register(http, subject, 'syntax = "proto3";', schemaType="PROTOBUF"), 422, 42201, "only AVRO")
    error(register(http, subject, avro_record("Order", ID),
                   references=[{"name": "x", "subject": "y", "version": 1}]), 422, 42201, "references")
    assert register(http, subject, avro_record("Order", ID), references=[]).status_code == 200


def test_config_and_mode_codes(registry_http: httpx.Client, subject: str) -> None:
    http = registry_http
    error(http.put(f"/config/{subject}", json={"compatibility": "SOMETIMES"}), 422, 42203, "SOMETIMES")
    error(http.put("/config", json={}), 422, 42203)
    assert http.put(f"/config/{subject}", json={"compatibility": "full_transitive"}).json() == {
        "compatibility": "FULL_TRANSITIVE"}
    assert http.get(f"/config/{subject}").json() == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert http.delete(f"/config/{subject}").json() == {"compatibilityLevel": "FULL_TRANSITIVE"}
    error(http.delete(f"/config/{subject}"), 404, 40408)
    global_level = http.get("/config").json()["compatibilityLevel"]
    assert http.get(f"/config/{subject}", params={"defaultToGlobal": "true"}).json() == {
        "compatibilityLevel": global_level}
    error(http.put("/mode", json={"mode": "IMPORT"}), 422, 42204, "READWRITE")
    assert http.put(f"/mode/{subject}", json={"mode": "READWRITE"}).json() == {"mode": "READWRITE"}


def test_bad_bodies_get_clear_messages_and_the_server_keeps_serving(
        registry_http: httpx.Client, subject: str, avro_record: Callable[..., str]) -> None:
    http = registry_http
    url = f"/subjects/{subject}/versions"
    error(http.post(url, content=b'{"schema": '), 400, 400, "Invalid JSON")
    error(http.post(url, content=b"\xff\xfe garbage"), 400, 400, "Invalid JSON")
    error(http.post(url, content=b""), 400, 400, "empty")
    error(http.post(url, content=b'["a list"]'), 422, 422, "JSON object")
    error(http.post(url, json={"schema": 42}), 422, 422, "must be a string")
    error(http.post(url, json={"schema": avro_record("Order", ID), "colour": "red"}), 422, 422,
          "Unrecognized field: colour")
    error(http.post(url, content=b'{"schema": "\\"string\\""}', headers={"Content-Type": "text/plain"}),
          415, 415, "content type")
    error(http.get("/subjects", params={"offset": "many"}), 422, 422, "offset")
    # Confluent's clients send this header; unknown fields are then ignored, as Confluent does.
    lenient = http.post(url, json={"schema": avro_record("Order", ID), "colour": "red"},
                        headers={"Confluent-Accept-Unknown-Properties": "true"})
    assert lenient.status_code == 200
    assert http.get("/subjects").status_code == 200
    assert register(http, subject, avro_record("Order", ID, QTY_DEFAULT)).status_code == 200


def test_registry_serves_health_and_metrics(schema_registry_url: str) -> None:
    assert httpx.get(f"{schema_registry_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{schema_registry_url}/readyz").status_code == 200
    metrics = httpx.get(f"{schema_registry_url}/metrics")
    assert metrics.status_code == 200 and "process_cpu_seconds_total" in metrics.text
