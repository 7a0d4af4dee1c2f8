"""payment and inventory keeping their state in PostgreSQL (CHOREO_STORE_URL), the same SQL as on
SQLite: authorize → reserve → cancel → refund and release once, and the tombstone path. Skipped
when 127.0.0.1:5432 does not answer. Tables are shared by every test (rows keyed by fresh ids)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from services import inventory, payment
from services.events import OrderCancelled
from tests.integration.services.shop import ShopEnv, make_env, new_id, order, running


@pytest.fixture(scope="module")
def pg_shop(kafka_config: dict[str, Any], schema_registry_url: str, pg_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopEnv]:
    env = make_env(kafka_config, schema_registry_url, tmp_path_factory.mktemp("pg-shop"), store_url=pg_url)
    with running(payment.service, env), running(inventory.service, env):
        yield env
    env.tap.close()


def cancelled(order_id: str) -> OrderCancelled:
    return OrderCancelled(order_id=order_id, reason="fraud-rejected", cancelled_at=datetime.now(UTC))


def test_compensation_on_postgresql(pg_shop: ShopEnv) -> None:
    sku = new_id("sku")
    placed = order(sku=sku, quantity=3, price=100)
    pg_shop.publish(placed)
    pg_shop.tap.wait_for(placed.order_id, "StockReserved")
    pg_shop.publish(cancelled(placed.order_id), cancelled(placed.order_id))
    pg_shop.tap.wait_for(placed.order_id, "PaymentRefunded")
    pg_shop.tap.wait_for(placed.order_id, "StockReleased")
    names = pg_shop.tap.quiet(placed.order_id, 0.5)
    assert names.count("PaymentRefunded") == 1 and names.count("StockReleased") == 1
    assert pg_shop.row(payment.service, "SELECT status, amount_minor FROM payment_payments WHERE order_id = ?",
                       (placed.order_id,)) == ("refunded", 300)
    assert pg_shop.row(inventory.service, "SELECT reserved, released, shipped FROM inventory_stock WHERE sku = ?",
                       (sku,)) == (3, 3, 0)


def test_tombstones_on_postgresql(pg_shop: ShopEnv) -> None:
    order_id = new_id()
    envelopes = pg_shop.publish(cancelled(order_id), order(order_id))
    pg_shop.processed(payment.service, envelopes)
    assert pg_shop.row(payment.service, "SELECT status FROM payment_payments WHERE order_id = ?",
                       (order_id,)) == ("void-cancelled",)
    assert "PaymentAuthorized" not in pg_shop.tap.quiet(order_id, 0.5)
