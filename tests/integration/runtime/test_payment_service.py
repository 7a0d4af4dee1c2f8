"""The reference `payment` service on the real schemas: the README's example, running for real."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from choreo.config import Settings
from choreo.schemas.catalog import SchemaCatalog
from services.events import OrderLine, OrderPlaced
from services.payment import service
from tests.integration.runtime.conftest import EchoEnv, running
from tests.support.kafka import headers_of, read_topic

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def test_payment_authorizes_and_declines(kafka_config, schema_registry_url, tmp_path: Path) -> None:
    settings = Settings(bootstrap_servers=kafka_config["bootstrap.servers"], schema_registry_url=schema_registry_url,
                        state_dir=tmp_path / "state", schemas_dir=SCHEMAS)
    env = EchoEnv(settings, "orders", "payments", SchemaCatalog.load(SCHEMAS), kafka_config)
    small, large = f"o-{uuid.uuid4().hex[:8]}", f"o-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    with env.publisher() as publisher:
        for order_id, price in ((small, 1999), (large, 900_000)):
            publisher.publish(OrderPlaced(order_id=order_id, customer_id="c-1", currency="EUR", placed_at=now,
                                          lines=[OrderLine(sku="sku-1", quantity=1, unit_price_minor=price)],
                                          total_minor=price))
    with running(service, env):
        ours = lambda ms: [m for m in ms if m.key() in (small.encode(), large.encode())]  # noqa: E731
        outputs = ours(read_topic(kafka_config, "payments", until=lambda ms: len(ours(ms)) >= 2))
    types = {m.key().decode(): headers_of(m)["ce_type"] for m in outputs}
    assert types == {small: "io.choreo.shop.PaymentAuthorized", large: "io.choreo.shop.PaymentDeclined"}
