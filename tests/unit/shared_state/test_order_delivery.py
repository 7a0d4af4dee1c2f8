"""The Order API's delivery details: validation, and no order with details while shared state is off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from choreo.api import ApiDeps
from choreo.config import Settings
from services import order
from services.order_api import OrderRequest
from services.rules import DEFAULT_CARRIER, DOMESTIC_TRANSIT, PARTNER_CARRIER, PARTNER_TRANSIT, shipping_route

GOOD = {"customer_id": "c-1", "currency": "EUR", "lines": [{"sku": "s", "quantity": 1, "unit_price_minor": 1}],
        "delivery": {"name": " Ada ", "street": "1 Loop Rd", "city": "Cambridge", "postcode": "CB1 2AB",
                     "country": "gb"}}


def with_delivery(**changes: Any) -> dict[str, Any]:
    return {**GOOD, "delivery": {**GOOD["delivery"], **changes}}


def test_good_details_are_normalised() -> None:
    delivery = OrderRequest.model_validate(GOOD).delivery
    assert delivery is not None and delivery.model_dump() == {
        "name": "Ada", "street": "1 Loop Rd", "city": "Cambridge", "postcode": "CB1 2AB", "country": "GB"}
    assert OrderRequest.model_validate({k: v for k, v in GOOD.items() if k != "delivery"}).delivery is None


@pytest.mark.parametrize("body", [
    with_delivery(country="GBR"), with_delivery(country="G1"), with_delivery(country=""),
    with_delivery(postcode="!"), with_delivery(postcode="1"), with_delivery(postcode="x" * 13),
    with_delivery(name=" "), with_delivery(name="a\nb"), with_delivery(street=""), with_delivery(city=7),
    with_delivery(name="x" * 201), {**GOOD, "delivery": "1 Loop Rd"}, {**GOOD, "delivery": []},
])
def test_bad_details_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        OrderRequest.model_validate(body)
    assert all(error["loc"][0] == "delivery" for error in caught.value.errors())


def test_without_a_service_token_an_order_with_details_is_503(tmp_path: Path) -> None:
    """Shared state off: the details could go nowhere shipping reads, so nothing is placed (no broker
    is touched: the refusal comes before the order is stored or published)."""
    deps = ApiDeps(Settings(state_dir=tmp_path, service_token=None), "order")
    with TestClient(order.service.api.build(deps)) as client:
        response = client.post("/orders", json=GOOD)
    assert response.status_code == 503, response.text
    assert not (tmp_path / "order.sqlite3").exists()  # not even the store was opened


def test_shipping_routes_by_country() -> None:
    assert shipping_route("DE") == shipping_route("de") == (DEFAULT_CARRIER, DOMESTIC_TRANSIT)
    assert shipping_route("NO") == (PARTNER_CARRIER, PARTNER_TRANSIT)
    for unknown in (None, "", "DEU", 7, "1A"):
        assert shipping_route(unknown) == (DEFAULT_CARRIER, DOMESTIC_TRANSIT)
