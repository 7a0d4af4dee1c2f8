"""A property-based run against the order API's /openapi.json operations: whatever the input, never 5xx.

Bodies are drawn both as arbitrary JSON and as a valid order with one part replaced by anything, so
the run reaches deep into validation (and places real orders on the test's topics when valid).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreo.api import ApiDeps
from services import order
from tests.integration.services.shop import ShopEnv

GOOD: dict[str, Any] = {"customer_id": "c-1", "currency": "EUR", "max_ttl_s": 5,
                        "lines": [{"sku": "sku-1", "quantity": 2, "unit_price_minor": 1250}]}

_json = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
                     | st.text(max_size=30),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                max_size=4), max_leaves=12)


@st.composite
def _mutated_order(draw: st.DrawFn) -> dict[str, Any]:
    body = json.loads(json.dumps(GOOD))
    where = draw(st.sampled_from(["customer_id", "currency", "max_ttl_s", "lines", "line", "extra", "delivery"]))
    value = draw(_json)
    if where == "line":
        body["lines"][0][draw(st.sampled_from(["sku", "quantity", "unit_price_minor", "other"]))] = value
    elif where == "extra":
        body[draw(st.text(max_size=10))] = value
    else:
        body[where] = value
    return body


@pytest.fixture(scope="module")
def client(shop: ShopEnv) -> Iterator[TestClient]:
    deps = ApiDeps(shop.settings, shop.service_name(order.service))
    with TestClient(order.service.api.build(deps), raise_server_exceptions=False) as client:
        yield client
    deps.close()


def test_no_input_makes_the_order_api_answer_5xx(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operations = sorted((path, method) for path, item in spec["paths"].items() for method in item)
    assert ("/orders", "post") in operations and ("/orders/{order_id}", "get") in operations

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def call(data: st.DataObject) -> None:
        path, method = data.draw(st.sampled_from(operations))
        if "{order_id}" in path:
            path = path.replace("{order_id}", quote(data.draw(st.text(min_size=1, max_size=40)), safe="") or "x")
        body = None
        if method == "post":
            kind = data.draw(st.sampled_from(["mutated", "json", "bytes"]))
            body = (json.dumps(data.draw(_mutated_order())).encode() if kind == "mutated"
                    else json.dumps(data.draw(_json)).encode() if kind == "json"
                    else data.draw(st.binary(max_size=300)))
        answer = client.request(method.upper(), path, content=body,
                                headers={"Content-Type": "application/json"})
        assert answer.status_code < 500, (method, path, body, answer.status_code, answer.text[:200])

    call()
