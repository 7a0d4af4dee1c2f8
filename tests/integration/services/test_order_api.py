"""The Order API (SPEC §5) against the real broker and registry: FastAPI's TestClient on the app the
`order` service serves, and once through a real `choreo run order` process (HTTP, health, timers).

Bad input must never answer 5xx: bad JSON, wrong types, empty lines, a body over 64 KiB, unknown ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from choreo.api import ApiDeps
from choreo.kafka.embedded import free_port
from choreo.testing.processes import ChoreoProcess, wait_until
from services import order
from services.order_api import MAX_BODY_BYTES
from tests.integration.services.shop import ShopEnv

GOOD = {"customer_id": "c-1", "currency": "EUR",
        "lines": [{"sku": "sku-1", "quantity": 2, "unit_price_minor": 1250}]}
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture(scope="module")
def client(shop: ShopEnv) -> Iterator[TestClient]:
    deps = ApiDeps(shop.settings, shop.service_name(order.service))
    with TestClient(order.service.api.build(deps)) as client:
        yield client
    deps.close()


def with_(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def line(**changes: Any) -> dict[str, Any]:
    return {**GOOD["lines"][0], **changes}


@pytest.mark.parametrize("body", [
    b"{not json", b"", b"\xff\xfe\x00", b"[1, 2]", b"null", b'"order"',
], ids=["broken", "empty", "not-utf8", "array", "null", "string"])
def test_bad_json_is_422(client: TestClient, body: bytes) -> None:
    response = client.post("/orders", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)


@pytest.mark.parametrize(("body", "field"), [
    (with_(customer_id=""), "customer_id"),
    (with_(customer_id="   "), "customer_id"),
    (with_(customer_id=7), "customer_id"),
    (with_(lines=[]), "lines"),
    (with_(lines="sku-1"), "lines"),
    (with_(lines=[line(quantity="2")]), "quantity"),
    (with_(lines=[line(quantity=2.5)]), "quantity"),
    (with_(lines=[line(quantity=2.0)]), "quantity"),
    (with_(lines=[line(quantity=True)]), "quantity"),
    (with_(lines=[line(quantity=0)]), "quantity"),
    (with_(lines=[line(unit_price_minor=-1)]), "unit_price_minor"),
    (with_(lines=[line(sku="")]), "sku"),
    (with_(lines=[line(quantity=2**31)]), "quantity"),
    (with_(currency="EURO"), "currency"),
    (with_(currency="E1R"), "currency"),
    (with_(max_ttl_s=0), "max_ttl_s"),
    (with_(max_ttl_s=-3), "max_ttl_s"),
    (with_(max_ttl_s="30"), "max_ttl_s"),
    (with_(max_ttl_s=1e300), "max_ttl_s"),
    ({"currency": "EUR", "lines": GOOD["lines"]}, "customer_id"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_wrong_fields_are_422_naming_the_field(client: TestClient, body: dict[str, Any], field: str) -> None:
    response = client.post("/orders", json=body)
    assert response.status_code == 422, response.text
    assert any(field in map(str, error["loc"]) for error in response.json()["detail"]), response.json()


def test_a_total_beyond_a_long_is_422(client: TestClient) -> None:
    body = with_(lines=[line(quantity=2**31 - 1, unit_price_minor=2**62), line(unit_price_minor=2**62)])
    assert client.post("/orders", json=body).status_code == 422


def test_a_body_over_64_kib_is_413(client: TestClient) -> None:
    big = json.dumps(with_(customer_id="x" * MAX_BODY_BYTES)).encode()
    assert client.post("/orders", content=big, headers={"content-type": "application/json"}).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed size is what counts
        yield big[: len(big) // 2]
        yield big[len(big) // 2 :]

    assert client.post("/orders", content=chunks()).status_code == 413


def test_unknown_order_is_404(client: TestClient) -> None:
    response = client.get("/orders/ord-does-not-exist")
    assert response.status_code == 404
    assert response.json() == {"detail": "no such order", "order_id": "ord-does-not-exist"}


def test_a_good_order_is_accepted_stored_and_published(client: TestClient, shop: ShopEnv) -> None:
    response = client.post("/orders", json=with_(max_ttl_s=45, customer_id="c-42", currency="eur"))
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"order_id", "job_id", "progress_url"}
    assert response.headers["location"] == body["progress_url"] == f"http://127.0.0.1:8001/jobs/{body['job_id']}"
    assert re.fullmatch(r"ord-[0-9a-f]{32}", body["order_id"])

    (placed,) = shop.tap.wait_for(body["order_id"], "OrderPlaced")
    assert placed.headers["correlation-id"] == body["job_id"]
    assert placed.event.total_minor == 2500 and placed.event.currency == "EUR"  # type: ignore[attr-defined]

    view = client.get(f"/orders/{body['order_id']}").json()
    assert {k: view[k] for k in ("order_id", "job_id", "customer_id", "status", "reason", "total_minor",
                                 "currency", "finished_at")} == {
        "order_id": body["order_id"], "job_id": body["job_id"], "customer_id": "c-42", "status": "running",
        "reason": None, "total_minor": 2500, "currency": "EUR", "finished_at": None}
    assert view["lines"] == GOOD["lines"]
    assert RFC3339_UTC.match(view["placed_at"]) and RFC3339_UTC.match(view["deadline"])
    ttl = datetime.fromisoformat(view["deadline"]) - datetime.fromisoformat(view["placed_at"])
    assert ttl == timedelta(seconds=45)
    assert placed.event.deadline == datetime.fromisoformat(view["deadline"])  # type: ignore[attr-defined]


def test_order_ids_are_never_sequential(client: TestClient) -> None:
    ids = [client.post("/orders", json=GOOD).json()["order_id"] for _ in range(3)]
    assert len({i[4:16] for i in ids}) == 3  # random from the first digit on, not a counter's shared prefix


def test_the_openapi_document_describes_the_body(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    post = document["paths"]["/orders"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(request["required"]) == {"customer_id", "lines", "currency"}
    assert "LineRequest" in document["components"]["schemas"]
    assert "/orders/{order_id}" in document["paths"]


def test_choreo_run_order_serves_the_api_and_expires_an_unanswered_order(shop: ShopEnv, tmp_path: Path) -> None:
    port = free_port()
    process = ChoreoProcess(["run", "order"], env={
        "CHOREO_BOOTSTRAP_SERVERS": shop.settings.bootstrap_servers,
        "CHOREO_SCHEMA_REGISTRY_URL": shop.settings.schema_registry_url,
        "CHOREO_SCHEMAS_DIR": str(shop.settings.schemas_dir), "CHOREO_STATE_DIR": str(tmp_path / "state"),
        "CHOREO_ORDER_API_PORT": str(port), "CHOREO_PROGRESS_URL": "http://progress.example/",
    }, log_path=tmp_path / "order.log").start()
    base = f"http://127.0.0.1:{port}"
    try:
        process.wait_http(f"{base}/healthz", timeout_s=60)
        assert httpx.get(f"{base}/metrics").status_code == 200
        assert httpx.get(f"{base}/openapi.json").status_code == 200
        assert httpx.post(f"{base}/orders", content=b"{oops").status_code == 422
        wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, 60, message="order ready")
        # Nobody else runs here: no payment, fraud or shipping answer, so the deadline timer expires it.
        response = httpx.post(f"{base}/orders", json=with_(max_ttl_s=1.5))
        assert response.status_code == 202, response.text
        order_id, job_id = response.json()["order_id"], response.json()["job_id"]
        assert response.headers["location"] == f"http://progress.example/jobs/{job_id}"
        wait_until(lambda: httpx.get(f"{base}/orders/{order_id}").json()["status"] == "expired", 20,
                   message="the order expired")
        view = httpx.get(f"{base}/orders/{order_id}").json()
        assert view["reason"] == "expired" and RFC3339_UTC.match(view["finished_at"])
        (expired,) = shop.tap.wait_for(order_id, "OrderExpired")
        assert expired.headers["correlation-id"] == job_id
    finally:
        process.terminate()
    assert "Traceback" not in process.log_tail(200)
