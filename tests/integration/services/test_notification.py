"""`notification` for real: one line per finished order in the log file, and one CustomerNotified,
however many terminal events of the order arrive."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from choreo.runtime.worker import Worker
from services import notification
from services.events import CustomerNotified, OrderCancelled, OrderCompleted, OrderExpired
from tests.integration.services.shop import ShopEnv, new_id, running


@pytest.fixture(scope="module")
def log_file(shop: ShopEnv) -> Iterator[Path]:
    path = Path(shop.settings.state_dir) / notification.LOG_NAME
    with pytest.MonkeyPatch.context() as patch:  # the worker's settings, not the process environment's
        patch.setattr(notification, "log_path", lambda: path)
        yield path


@pytest.fixture(scope="module", autouse=True)
def notifier(shop: ShopEnv, log_file: Path) -> Iterator[Worker]:
    with running(notification.service, shop) as worker:
        yield worker


def lines_for(path: Path, order_id: str) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [entry for entry in map(json.loads, path.read_text().splitlines()) if entry["order_id"] == order_id]


def test_a_completed_order_is_reported(shop: ShopEnv, log_file: Path) -> None:
    order_id = new_id()
    shop.publish(OrderCompleted(order_id=order_id, shipment_id="shp-1", completed_at=datetime.now(UTC)))
    (seen,) = shop.tap.wait_for(order_id, "CustomerNotified")
    assert isinstance(seen.event, CustomerNotified)
    assert (seen.event.outcome, seen.event.template) == ("completed", "order-completed")
    (line,) = lines_for(log_file, order_id)
    assert (line["outcome"], line["reason"]) == ("completed", None)


def test_one_line_per_order_whatever_arrives(shop: ShopEnv, log_file: Path) -> None:
    order_id, now = new_id(), datetime.now(UTC)
    envelopes = shop.publish(
        OrderCancelled(order_id=order_id, reason="stock-unavailable", cancelled_at=now),
        OrderCancelled(order_id=order_id, reason="stock-unavailable", cancelled_at=now),
        OrderExpired(order_id=order_id, deadline=now, expired_at=now))
    shop.processed(notification.service, envelopes)
    shop.tap.wait_for(order_id, "CustomerNotified")
    assert shop.tap.quiet(order_id, 0.5).count("CustomerNotified") == 1
    (line,) = lines_for(log_file, order_id)
    assert (line["outcome"], line["reason"]) == ("cancelled", "stock-unavailable")
