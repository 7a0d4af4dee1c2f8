"""`inventory` for real: reserve all or nothing, unavailable stock, release once, a cancellation that
overtakes the authorization, shipped stock, and the per-SKU balance. SKUs are fresh per test, so the
stock counters each test reads are its own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from choreo.runtime.worker import Worker
from services.events import (
    AuthorizedLine,
    OrderCancelled,
    OrderExpired,
    PaymentAuthorized,
    ShipmentDispatched,
    StockReserved,
    StockUnavailable,
)
from services.inventory import service
from services.rules import AMPLE_STOCK
from tests.integration.services.shop import ShopEnv, new_id, running

STOCK = "SELECT available, reserved, released, shipped FROM inventory_stock WHERE sku = ?"
RESERVATION = "SELECT status FROM inventory_reservations WHERE order_id = ?"


@pytest.fixture(scope="module", autouse=True)
def inventory(shop: ShopEnv) -> Iterator[Worker]:
    with running(service, shop) as worker:
        yield worker


def authorized(order_id: str, *lines: tuple[str, int]) -> PaymentAuthorized:
    return PaymentAuthorized(order_id=order_id, payment_id=f"pay-{order_id}", amount_minor=100, currency="EUR",
                             authorized_at=datetime.now(UTC),
                             lines=[AuthorizedLine(sku=sku, quantity=q) for sku, q in lines])


def cancelled(order_id: str) -> OrderCancelled:
    return OrderCancelled(order_id=order_id, reason="fraud-rejected", cancelled_at=datetime.now(UTC))


def dispatched(order_id: str) -> ShipmentDispatched:
    return ShipmentDispatched(order_id=order_id, shipment_id=f"shp-{order_id}", carrier="c", tracking_number="t")


def test_reserves_every_line(shop: ShopEnv) -> None:
    order_id, a, b = new_id(), new_id("sku"), new_id("sku")
    shop.publish(authorized(order_id, (a, 2), (b, 1), (a, 3)))
    (seen,) = shop.tap.wait_for(order_id, "StockReserved")
    assert isinstance(seen.event, StockReserved)
    assert {(line.sku, line.quantity) for line in seen.event.lines} == {(a, 5), (b, 1)}  # one entry per SKU
    assert shop.row(service, STOCK, (a,)) == (AMPLE_STOCK - 5, 5, 0, 0)
    assert shop.row(service, RESERVATION, (order_id,)) == ("reserved",)


def test_a_sold_out_line_reserves_nothing(shop: ShopEnv) -> None:
    order_id, plenty, gone = new_id(), new_id("sku"), new_id("sold-out")
    shop.publish(authorized(order_id, (plenty, 1), (gone, 2)))
    (seen,) = shop.tap.wait_for(order_id, "StockUnavailable")
    assert isinstance(seen.event, StockUnavailable)
    assert (seen.event.sku, seen.event.requested, seen.event.available) == (gone, 2, 0)
    assert shop.row(service, STOCK, (plenty,)) == (AMPLE_STOCK, 0, 0, 0)  # no partial reservation
    assert "StockReserved" not in shop.tap.names(order_id)


def test_releases_a_reservation_once(shop: ShopEnv) -> None:
    order_id, sku = new_id(), new_id("sku")
    shop.publish(authorized(order_id, (sku, 4)))
    shop.tap.wait_for(order_id, "StockReserved")
    now = datetime.now(UTC)
    expired = OrderExpired(order_id=order_id, deadline=now, expired_at=now)
    shop.publish(cancelled(order_id), cancelled(order_id), expired)
    shop.tap.wait_for(order_id, "StockReleased")
    assert shop.tap.quiet(order_id, 1.0).count("StockReleased") == 1
    assert shop.row(service, STOCK, (sku,)) == (AMPLE_STOCK, 4, 4, 0)
    assert shop.row(service, RESERVATION, (order_id,)) == ("released",)


def test_a_cancellation_before_the_payment_refuses_the_reservation(shop: ShopEnv) -> None:
    order_id, sku = new_id(), new_id("sku")
    shop.processed(service, shop.publish(cancelled(order_id)))  # orders topic: it overtakes the payment
    shop.processed(service, shop.publish(authorized(order_id, (sku, 1))))
    assert shop.row(service, RESERVATION, (order_id,)) == ("void-cancelled",)
    assert shop.row(service, STOCK, (sku,)) is None  # never even looked at
    assert shop.tap.quiet(order_id, 0.5) == ["OrderCancelled", "PaymentAuthorized"]


def test_reserved_minus_released_is_shipped(shop: ShopEnv) -> None:
    sku = new_id("sku")
    orders = [new_id() for _ in range(4)]
    shop.publish(*(authorized(o, (sku, n + 1)) for n, o in enumerate(orders)))  # 1 + 2 + 3 + 4 units
    for o in orders:
        shop.tap.wait_for(o, "StockReserved")
    envelopes = shop.publish(cancelled(orders[0]), *(dispatched(o) for o in orders[1:]))
    envelopes += shop.publish(dispatched(orders[1]))  # a second dispatch report changes nothing
    shop.processed(service, envelopes)
    statuses = [shop.row(service, RESERVATION, (o,)) for o in orders]
    assert statuses == [("released",), ("shipped",), ("shipped",), ("shipped",)]
    available, reserved, released, shipped = shop.row(service, STOCK, (sku,))  # type: ignore[misc]
    assert (reserved, released, shipped) == (10, 1, 9)
    assert reserved - released == shipped and available == AMPLE_STOCK - shipped
