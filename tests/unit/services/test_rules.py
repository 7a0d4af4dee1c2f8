"""The shop's deterministic rules (services/rules.py) and the Order API's pure parts, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from choreo.api import ApiDeps, ServiceApi
from choreo.config import Settings
from choreo.errors import ConfigError, RetryableError
from services import rules
from services.order import service as order_service
from services.order_api import OrderRequest
from services.order_state import COLUMNS, order_view, rfc3339
from services.shipping import tracking_number

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("customer", "total", "attempt", "expected"), [
    ("c-1", 500_000, 1, "authorize"),
    ("c-1", 500_001, 1, "decline"),
    ("flaky-1", 100, 3, "authorize"),
    ("flaky-1", 900_000, 3, "decline"),
    ("slow-1", 100, 1, "authorize"),
])
def test_payment_decision(customer: str, total: int, attempt: int, expected: str) -> None:
    assert rules.payment_decision(customer, total, attempt) == expected


@pytest.mark.parametrize("attempt", [1, 2])
def test_flaky_gateway_fails_the_first_two_attempts(attempt: int) -> None:
    with pytest.raises(rules.GatewayUnavailable) as raised:
        rules.payment_decision("flaky-1", 100, attempt)
    assert isinstance(raised.value, RetryableError)


def test_fraud_decision() -> None:
    assert rules.fraud_decision("c-1", NOW, NOW) == "pass"
    assert rules.fraud_decision("fraud-1", NOW, NOW + timedelta(hours=1)) == "fail"
    with pytest.raises(rules.FraudCheckPending):
        rules.fraud_decision("slow-1", NOW, NOW + timedelta(milliseconds=1))
    assert rules.fraud_decision("slow-1", NOW, NOW) == "give-up"  # at the deadline: no verdict
    assert rules.fraud_score("fraud-1") > 0.9 > rules.fraud_score("c-1")


def test_stock_and_quantities() -> None:
    assert rules.initial_stock("sold-out-tee") == 0
    assert rules.initial_stock("tee") == rules.AMPLE_STOCK
    assert rules.quantities([("a", 1), ("b", 2), ("a", 3)]) == {"a": 4, "b": 2}


def test_deadlines() -> None:
    assert rules.job_deadline(NOW, None, 30) == NOW + timedelta(seconds=30)
    assert rules.job_deadline(NOW, NOW + timedelta(seconds=5), 30) == NOW + timedelta(seconds=5)
    assert rules.earliest(None, NOW, NOW - timedelta(seconds=1)) == NOW - timedelta(seconds=1)
    assert rules.earliest(None, None) is None
    assert rules.may_ship(NOW, None)
    assert rules.may_ship(NOW, NOW + timedelta(seconds=1, milliseconds=1))
    assert not rules.may_ship(NOW, NOW + timedelta(seconds=1))  # within the margin: too late


def test_epoch_ms_round_trip() -> None:
    moment = datetime(2030, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert rules.from_ms(rules.to_ms(moment)) == moment
    assert rules.to_ms(None) is None and rules.from_ms(None) is None


def test_order_request_validation() -> None:
    good = {"customer_id": "c", "currency": "eur", "lines": [{"sku": "s", "quantity": 2, "unit_price_minor": 5}]}
    request = OrderRequest.model_validate(good)
    assert request.total_minor == 10 and request.max_ttl_s is None
    for bad in ({**good, "lines": []}, {**good, "currency": "EU"}, {**good, "max_ttl_s": 0},
                {**good, "lines": [{"sku": "s", "quantity": "2", "unit_price_minor": 5}]}):
        with pytest.raises(ValidationError):
            OrderRequest.model_validate(bad)


def test_order_view_formats_times_as_rfc3339_utc() -> None:
    row = ("o-1", "job", "c", "expired", "expired", '[{"sku": "s", "quantity": 1, "unit_price_minor": 2}]',
           2, "EUR", rules.to_ms(NOW), rules.to_ms(NOW + timedelta(seconds=30)), None)
    view = order_view(row)
    assert list(view) == list(COLUMNS)
    assert view["placed_at"] == "2030-01-01T00:00:00.000Z" and view["deadline"] == "2030-01-01T00:00:30.000Z"
    assert view["finished_at"] is None and view["lines"][0]["sku"] == "s"
    assert rfc3339(None) is None


def test_tracking_numbers_are_stable_per_order() -> None:
    assert tracking_number("o-1") == tracking_number("o-1") != tracking_number("o-2")


def test_service_api_port_and_build() -> None:
    api = order_service.api
    assert isinstance(api, ServiceApi)
    assert api.port(Settings(order_api_port=8123)) == 8123
    with pytest.raises(ConfigError, match="no_such_port"):
        ServiceApi(api.factory, port_setting="no_such_port").port(Settings())
    with pytest.raises(ConfigError, match="not a FastAPI app"):
        ServiceApi(lambda deps: object(), port_setting="order_api_port").build(  # type: ignore[arg-type,return-value]
            ApiDeps(Settings(), "order"))
    app = api.build(ApiDeps(Settings(), "order"))  # building needs no broker: the publisher is lazy
    assert {"/orders", "/orders/{order_id}"} <= {getattr(route, "path", "") for route in app.routes}


def test_every_service_loads_by_name() -> None:
    from choreo.runtime.loader import load_service

    for name in ("order", "payment", "fraud", "inventory", "shipping", "notification"):
        assert load_service(name).name == name
