"""The shop uses shared state for real: delivery details enter with the order, the Order API writes
them to the job's shared state before it publishes OrderPlaced, ``shipping`` reads them when it
dispatches. The state server is ``create_state_app`` on uvicorn (the progress service serves the same
routes); the services are real
workers on this module's topics (tests/integration/services/shop.py). The customer, holding only the
``Location`` URL (the job id), can neither read nor change the details.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from choreo.api import ApiDeps
from choreo.config import Settings, get_settings
from choreo.kafka.embedded import free_port
from choreo.shared_state import SharedState
from choreo.testing.processes import wait_until
from services import fraud, inventory, order, payment, shipping
from services.events import FraudCheckPassed, ReservedLine, StockReserved
from services.rules import DEFAULT_CARRIER, PARTNER_CARRIER
from tests.integration.services.shop import ShopEnv, make_env, new_id, running
from tests.integration.shared_state.conftest import serve

TOKEN = secrets.token_urlsafe(32)
DELIVERY = {"name": "Kari Nordmann", "street": "Storgata 1", "city": "Oslo", "postcode": "0155", "country": "no"}


@pytest.fixture(scope="module")
def state_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def state_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(state_dir=tmp_path_factory.mktemp("progress"), service_token=TOKEN)


@pytest.fixture(scope="module")
def env(kafka_config: dict[str, Any], schema_registry_url: str, tmp_path_factory: pytest.TempPathFactory,
        state_port: int) -> Iterator[ShopEnv]:
    """The shop's settings point at the state server, in the environment too: handlers read
    ``get_settings()`` (the process's), the Order API its ``deps.settings``."""
    url = f"http://127.0.0.1:{state_port}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHOREO_SERVICE_TOKEN", TOKEN)
        patch.setenv("CHOREO_PROGRESS_URL", url)
        get_settings.cache_clear()
        shop = make_env(kafka_config, schema_registry_url, tmp_path_factory.mktemp("shop"),
                        progress_url=url, service_token=TOKEN)
        yield shop
        shop.tap.close()
    get_settings.cache_clear()


class StateServerSwitch:
    """The module's state server on a fixed port, which a test may take down for a while."""

    def __init__(self, settings: Settings, port: int) -> None:
        self._settings, self._port = settings, port
        self._serving: AbstractContextManager[str] | None = None

    def start(self) -> None:
        self._serving = serve(self._settings, self._port)
        self._serving.__enter__()

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.__exit__(None, None, None)
            self._serving = None

    @contextmanager
    def down(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()


@pytest.fixture(scope="module")
def state_server(state_settings: Settings, state_port: int) -> Iterator[StateServerSwitch]:
    switch = StateServerSwitch(state_settings, state_port)
    switch.start()
    yield switch
    switch.stop()


@pytest.fixture(scope="module")
def client(env: ShopEnv, state_server: StateServerSwitch) -> Iterator[TestClient]:
    with ExitStack() as stack:
        for service in (order.service, payment.service, fraud.service, inventory.service, shipping.service):
            stack.enter_context(running(service, env))
        deps = ApiDeps(env.settings, env.service_name(order.service))
        stack.callback(deps.close)
        yield stack.enter_context(TestClient(order.service.api.build(deps)))


def place(client: TestClient, delivery: dict[str, str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"customer_id": "c-ship", "currency": "EUR",
                            "lines": [{"sku": f"sku-{uuid.uuid4().hex[:6]}", "quantity": 1, "unit_price_minor": 999}]}
    if delivery is not None:
        body["delivery"] = delivery
    response = client.post("/orders", json=body)
    assert response.status_code == 202, response.text
    return {**response.json(), "location": response.headers["location"]}


def destination(env: ShopEnv, order_id: str) -> tuple[Any, ...] | None:
    return env.row(shipping.service, "SELECT carrier, country, postcode, city, source FROM shipping_destinations"
                                     " WHERE order_id = ?", (order_id,))


def test_shipping_reads_the_delivery_details_order_wrote(client: TestClient, env: ShopEnv) -> None:
    placed = place(client, DELIVERY)
    (dispatched,) = env.tap.wait_for(placed["order_id"], "ShipmentDispatched", timeout_s=40)
    assert dispatched.event.carrier == PARTNER_CARRIER  # type: ignore[attr-defined]  # Norway: the partner
    eta = dispatched.event.estimated_delivery_at - datetime.now(UTC)  # type: ignore[attr-defined]
    assert timedelta(days=4, hours=23) < eta <= timedelta(days=5)
    assert destination(env, placed["order_id"]) == (PARTNER_CARRIER, "NO", "0155", "Oslo", "shared-state")
    env.tap.wait_for(placed["order_id"], "OrderCompleted", timeout_s=20)

    # The details live in the job's shared state; none of it travelled on an event.
    state = SharedState(env.settings.progress_url or "", TOKEN, placed["job_id"]).get()
    assert state is not None and state[0] == {"delivery": {**DELIVERY, "country": "NO"}}
    for seen in env.tap.events(placed["order_id"]):
        assert "Storgata" not in repr(seen.event) and "Nordmann" not in repr(seen.event)


def test_without_delivery_details_shipping_uses_the_default_route(client: TestClient, env: ShopEnv) -> None:
    placed = place(client, None)
    (dispatched,) = env.tap.wait_for(placed["order_id"], "ShipmentDispatched", timeout_s=40)
    assert dispatched.event.carrier == DEFAULT_CARRIER  # type: ignore[attr-defined]
    assert destination(env, placed["order_id"]) == (DEFAULT_CARRIER, None, None, None, "default")
    assert SharedState(env.settings.progress_url or "", TOKEN, placed["job_id"]).get() is None


def test_the_job_id_alone_neither_reads_nor_changes_the_delivery_details(client: TestClient, env: ShopEnv) -> None:
    placed = place(client, {**DELIVERY, "country": "DE"})
    env.tap.wait_for(placed["order_id"], "ShipmentDispatched", timeout_s=40)
    state_url = placed["location"] + "/state"  # what a customer can build from Location / the job id
    assert placed["job_id"] in state_url
    services = SharedState(env.settings.progress_url or "", TOKEN, placed["job_id"])
    before = services.get()
    assert before is not None and before[0]["delivery"]["street"] == "Storgata 1"

    attempts = [("GET", {}, 401), ("GET", {"Authorization": "Bearer guessed"}, 403),
                ("GET", {"Authorization": f"Bearer {placed['job_id']}"}, 403)]
    for precondition in ({"If-None-Match": "*"}, {"If-Match": before[1]}, {"If-Match": "*"}, {}):
        attempts += [("PUT", precondition, 401), ("PUT", {**precondition, "Authorization": "Bearer guessed"}, 403)]
    for method, headers, status in attempts:
        response = httpx.request(method, state_url, headers=headers,
                                 json={"delivery": {**DELIVERY, "street": "Thief Lane 9"}} if method == "PUT" else None)
        assert response.status_code == status, (method, headers, response.text)
        assert "Storgata" not in response.text and "Thief" not in response.text
        assert response.headers["etag"] == '"0"'  # not even the version leaks
    assert services.get() == before  # unchanged, same ETag


@pytest.mark.parametrize("delivery", [
    {**DELIVERY, "country": "NOR"}, {**DELIVERY, "country": "N1"}, {**DELIVERY, "postcode": "!"},
    {**DELIVERY, "name": "  "}, {**DELIVERY, "city": 7}, {k: v for k, v in DELIVERY.items() if k != "street"},
    "Storgata 1, Oslo",
], ids=["country-3", "country-digit", "postcode", "blank-name", "city-number", "no-street", "string"])
def test_bad_delivery_details_are_422(client: TestClient, delivery: Any) -> None:
    body = {"customer_id": "c-1", "currency": "EUR", "delivery": delivery,
            "lines": [{"sku": "sku-1", "quantity": 1, "unit_price_minor": 1}]}
    response = client.post("/orders", json=body)
    assert response.status_code == 422, response.text
    assert any("delivery" in map(str, error["loc"]) for error in response.json()["detail"])


def shipping_read_failures(env: ShopEnv) -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if (sample.name == "choreo_handler_errors_total"
                    and sample.labels.get("error_type") == "DeliveryUnavailable"
                    and sample.labels.get("service") == env.service_name(shipping.service)):
                total += sample.value
    return total


def test_a_failing_read_is_retried_and_the_outage_costs_no_details(client: TestClient, env: ShopEnv,
                                                                    state_server: StateServerSwitch) -> None:
    """The state server is down when shipping's join completes: the read fails (retryable), the retry
    after it came back reads the details."""
    order_id, job_id = new_id(), str(uuid.uuid4())
    SharedState(env.settings.progress_url or "", TOKEN, job_id).create({"delivery": {**DELIVERY, "country": "JP"}})
    failures = shipping_read_failures(env)
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    with state_server.down():
        env.publish(StockReserved(order_id=order_id, reservation_id="r-1", deadline=deadline,
                                  lines=[ReservedLine(sku="sku-1", quantity=1)]),
                    FraudCheckPassed(order_id=order_id, score=0.1, deadline=deadline), correlation_id=job_id)
        wait_until(lambda: shipping_read_failures(env) > failures, 20, message="shipping's read failed")
    (dispatched,) = env.tap.wait_for(order_id, "ShipmentDispatched", timeout_s=20)
    assert dispatched.event.carrier == PARTNER_CARRIER  # type: ignore[attr-defined]
    assert destination(env, order_id) == (PARTNER_CARRIER, "JP", "0155", "Oslo", "shared-state")



def test_with_the_state_server_down_an_order_with_details_is_503(client: TestClient, env: ShopEnv,
                                                                 state_server: StateServerSwitch) -> None:
    """Nothing is placed without its details (the client retries); orders without details go on."""
    with state_server.down():
        body = {"customer_id": "c-1", "currency": "EUR", "delivery": DELIVERY,
                "lines": [{"sku": "sku-1", "quantity": 1, "unit_price_minor": 1}]}
        refused = client.post("/orders", json=body)
        assert refused.status_code == 503 and refused.json() == {"detail": "order service unavailable, retry later"}
        placed = place(client, None)
    env.tap.wait_for(placed["order_id"], "OrderCompleted", timeout_s=40)
