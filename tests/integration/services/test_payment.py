"""`payment` for real (broker, registry, SQLite store): authorize, decline, flaky retries, refund once,
and a cancellation that overtakes the authorization. One worker serves every test of the module;
each test uses its own order ids (see shop.py for the isolation)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from choreo.runtime.worker import Worker
from services.events import OrderCancelled, OrderExpired, PaymentAuthorized, PaymentRefunded
from services.payment import service
from tests.integration.services.shop import ShopEnv, new_id, order, running
from tests.support.kafka import read_all

STATUS = "SELECT status, amount_minor FROM payment_payments WHERE order_id = ?"


@pytest.fixture(scope="module", autouse=True)
def payment(shop: ShopEnv) -> Iterator[Worker]:
    with running(service, shop) as worker:
        yield worker


def cancelled(order_id: str, reason: str = "fraud-rejected") -> OrderCancelled:
    return OrderCancelled(order_id=order_id, reason=reason, cancelled_at=datetime.now(UTC))


def test_authorizes_with_the_lines_and_deadline(shop: ShopEnv) -> None:
    deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
    placed = order(quantity=3, price=1000, deadline=deadline)
    (root,) = shop.publish(placed)
    (seen,) = shop.tap.wait_for(placed.order_id, "PaymentAuthorized")
    event = seen.event
    assert isinstance(event, PaymentAuthorized)
    assert (event.amount_minor, event.currency, event.payment_id) == (3000, "EUR", f"pay-{placed.order_id}")
    assert [(line.sku, line.quantity) for line in event.lines] == [("sku-1", 3)]
    assert event.deadline == deadline
    assert seen.headers["correlation-id"] == root.correlation_id  # the job's id, carried on
    assert shop.row(service, STATUS, (placed.order_id,)) == ("authorized", 3000)


def test_declines_over_the_card_limit(shop: ShopEnv) -> None:
    placed = order(price=500_001)
    shop.publish(placed)
    (seen,) = shop.tap.wait_for(placed.order_id, "PaymentDeclined")
    assert seen.event.decline_code == "limit"  # type: ignore[attr-defined]
    assert shop.row(service, STATUS, (placed.order_id,))[0] == "declined"  # type: ignore[index]
    assert "PaymentAuthorized" not in shop.tap.names(placed.order_id)


def test_flaky_gateway_authorizes_after_two_retries(shop: ShopEnv) -> None:
    placed = order(customer="flaky-ann")
    started = time.monotonic()
    shop.publish(placed)
    shop.tap.wait_for(placed.order_id, "PaymentAuthorized", timeout_s=20)
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 10, elapsed  # the 0.5 s and 1 s retry delays, then the third attempt passes
    name = shop.service_name(service)
    for level in (1, 2):  # one trip through each of the first two retry topics
        keys = [m.key() for m in read_all(shop.settings, f"{name}.retry.{level}")]
        assert keys.count(placed.order_id.encode()) == 1, level


def test_refunds_once_what_was_authorized(shop: ShopEnv) -> None:
    placed = order(quantity=2, price=2500)
    shop.publish(placed)
    shop.tap.wait_for(placed.order_id, "PaymentAuthorized")
    now = datetime.now(UTC)
    shop.publish(cancelled(placed.order_id), cancelled(placed.order_id),
                 OrderExpired(order_id=placed.order_id, deadline=now, expired_at=now))
    (refund,) = shop.tap.wait_for(placed.order_id, "PaymentRefunded")
    assert isinstance(refund.event, PaymentRefunded)
    assert (refund.event.amount_minor, refund.event.reason) == (5000, "fraud-rejected")
    assert shop.tap.quiet(placed.order_id, 1.0).count("PaymentRefunded") == 1
    assert shop.row(service, STATUS, (placed.order_id,)) == ("refunded", 5000)


def test_a_cancellation_first_leaves_a_tombstone_that_refuses_the_authorization(shop: ShopEnv) -> None:
    order_id = new_id()
    envelopes = shop.publish(cancelled(order_id, "payment-declined"), order(order_id))
    shop.processed(service, envelopes)  # same key, same partition: handled in this order
    assert shop.row(service, STATUS, (order_id,)) == ("void-cancelled", 0)
    assert shop.tap.quiet(order_id, 0.5) == ["OrderCancelled", "OrderPlaced"]  # nothing authorized


def test_nothing_to_refund_for_a_declined_payment(shop: ShopEnv) -> None:
    placed = order(price=900_000)
    shop.publish(placed)
    shop.tap.wait_for(placed.order_id, "PaymentDeclined")
    shop.processed(service, shop.publish(cancelled(placed.order_id, "payment-declined")))
    assert "PaymentRefunded" not in shop.tap.quiet(placed.order_id, 0.5)
    assert shop.row(service, STATUS, (placed.order_id,))[0] == "declined"  # type: ignore[index]
