"""The whole reference shop (SPEC §7), every rule end to end: the six services run as real workers
(threads of this process) on this module's topics, orders enter through the Order API, and each
order's outcome, compensations, notification and the stock balance are checked."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from choreo.api import ApiDeps
from choreo.testing.processes import wait_until
from services import fraud, inventory, notification, order, payment, shipping
from tests.integration.services.shop import ShopEnv, running

SERVICES = (order.service, payment.service, fraud.service, inventory.service, shipping.service,
            notification.service)


@pytest.fixture(scope="module")
def client(shop: ShopEnv) -> Iterator[TestClient]:
    log_file = Path(shop.settings.state_dir) / notification.LOG_NAME
    with ExitStack() as stack, pytest.MonkeyPatch.context() as patch:
        patch.setattr(notification, "log_path", lambda: log_file)
        for service in SERVICES:
            stack.enter_context(running(service, shop))
        deps = ApiDeps(shop.settings, shop.service_name(order.service))
        stack.callback(deps.close)
        yield stack.enter_context(TestClient(order.service.api.build(deps)))


def place(client: TestClient, customer: str, sku: str, price: int = 1999, **extra: Any) -> str:
    body = {"customer_id": customer, "currency": "EUR", **extra,
            "lines": [{"sku": sku, "quantity": 2, "unit_price_minor": price}]}
    response = client.post("/orders", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["order_id"])


def finished(client: TestClient, order_id: str) -> dict[str, Any]:
    wait_until(lambda: client.get(f"/orders/{order_id}").json()["status"] != "running", 40,
               message=f"order {order_id} finished")
    return dict(client.get(f"/orders/{order_id}").json())


def test_every_rule_ends_as_the_spec_says(client: TestClient, shop: ShopEnv) -> None:
    tag = uuid.uuid4().hex[:6]
    cases = {  # name → (customer, sku, price, extra, status, reason)
        "happy": ("c-happy", f"sku-{tag}", 1999, {}, "completed", None),
        "declined": ("c-rich", f"sku-{tag}", 300_000, {}, "cancelled", "payment-declined"),
        "sold-out": ("c-unlucky", f"sold-out-{tag}", 1999, {}, "cancelled", "stock-unavailable"),
        "fraud": ("fraud-mallory", f"sku-{tag}", 1999, {}, "cancelled", "fraud-rejected"),
        "flaky": ("flaky-ann", f"sku-{tag}", 1999, {}, "completed", None),
        "slow": ("slow-sam", f"sku-{tag}", 1999, {"max_ttl_s": 4}, "expired", "expired"),
    }
    ids = {name: place(client, customer, sku, price, **extra)
           for name, (customer, sku, price, extra, _, _) in cases.items()}
    for name, (_, _, _, _, status, reason) in cases.items():
        view = finished(client, ids[name])
        assert (view["status"], view["reason"]) == (status, reason), name

    tap = shop.tap
    for order_id in ids.values():
        tap.wait_for(order_id, "CustomerNotified")
    for name, order_id in ids.items():
        names = tap.quiet(order_id, 0) if name != "slow" else tap.names(order_id)
        terminal = [n for n in names if n in ("OrderCompleted", "OrderCancelled", "OrderExpired")]
        assert len(terminal) == 1, (name, names)  # one outcome per job
        authorized = "PaymentAuthorized" in names
        if cases[name][4] == "completed":
            assert "ShipmentDispatched" in names and "PaymentRefunded" not in names, (name, names)
        else:
            assert "ShipmentDispatched" not in names, (name, names)
            if authorized:  # compensation: every authorization refunded, once
                tap.wait_for(order_id, "PaymentRefunded")
            if "StockReserved" in names:
                tap.wait_for(order_id, "StockReleased")
    assert "PaymentAuthorized" not in tap.names(ids["declined"])
    assert "PaymentRefunded" in tap.names(ids["sold-out"]) and "PaymentRefunded" in tap.names(ids["slow"])
    assert "StockReleased" in tap.names(ids["slow"])

    # Refunds and releases settle; afterwards every SKU balances: reserved - released = shipped.
    for order_id in ids.values():
        names = tap.quiet(order_id, 0)
        assert names.count("PaymentRefunded") <= 1 and names.count("StockReleased") <= 1
    def balanced() -> bool:  # a release may still be on its way when the tap is read
        stock = shop.row(inventory.service, "SELECT reserved, released, shipped FROM inventory_stock"
                                            " WHERE sku = ?", (f"sku-{tag}",))
        return stock is not None and stock[0] - stock[1] == stock[2] == 4  # happy and flaky: 2 units each

    wait_until(balanced, 10, message="reserved - released = shipped for the shared SKU")

    log_file = Path(shop.settings.state_dir) / notification.LOG_NAME
    lines = [json.loads(text) for text in log_file.read_text().splitlines()]
    ours = [entry for entry in lines if entry["order_id"] in set(ids.values())]
    assert sorted(entry["order_id"] for entry in ours) == sorted(ids.values())  # one line per order
