"""`fraud` for real: pass, reject, and a slow check that retries until the job's deadline, then gives up
without a verdict (and without a dead letter)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from choreo.runtime.worker import Worker
from services.events import FraudCheckPassed
from services.fraud import service
from tests.integration.services.shop import ShopEnv, order, running
from tests.support.kafka import read_all


@pytest.fixture(scope="module", autouse=True)
def fraud(shop: ShopEnv) -> Iterator[Worker]:
    with running(service, shop) as worker:
        yield worker


def test_passes_with_the_deadline(shop: ShopEnv) -> None:
    deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
    placed = order(deadline=deadline)
    shop.publish(placed)
    (seen,) = shop.tap.wait_for(placed.order_id, "FraudCheckPassed")
    assert isinstance(seen.event, FraudCheckPassed) and seen.event.deadline == deadline


def test_rejects_fraud_customers(shop: ShopEnv) -> None:
    placed = order(customer="fraud-mallory")
    shop.publish(placed)
    (seen,) = shop.tap.wait_for(placed.order_id, "FraudCheckFailed")
    assert seen.event.score > 0.9  # type: ignore[attr-defined]
    assert "FraudCheckPassed" not in shop.tap.names(placed.order_id)


def test_a_slow_check_retries_until_the_deadline_then_gives_up(shop: ShopEnv) -> None:
    placed = order(customer="slow-sam", deadline=datetime.now(UTC) + timedelta(seconds=2))
    started = time.monotonic()
    shop.processed(service, shop.publish(placed), timeout_s=20)  # attempts at ~0, 0.5, 1.5, 3.5 s
    assert time.monotonic() - started >= 2.0
    assert shop.tap.quiet(placed.order_id, 0.3) == ["OrderPlaced"]  # no verdict at all
    name = shop.service_name(service)
    retried = [m for m in read_all(shop.settings, f"{name}.retry.1") if m.key() == placed.order_id.encode()]
    assert len(retried) == 1
    assert not [m for m in read_all(shop.settings, f"{name}.dlq") if m.key() == placed.order_id.encode()]


def test_without_a_deadline_the_default_ttl_from_placed_at_applies(shop: ShopEnv) -> None:
    placed = order(customer="slow-old", placed_at=datetime.now(UTC) - timedelta(minutes=5))
    shop.processed(service, shop.publish(placed), timeout_s=10)  # long past placed_at + 30 s: no retry
    assert shop.tap.quiet(placed.order_id, 0.3) == ["OrderPlaced"]
    name = shop.service_name(service)
    assert not [m for m in read_all(shop.settings, f"{name}.retry.1") if m.key() == placed.order_id.encode()]
