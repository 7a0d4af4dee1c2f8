"""Running the reference services for real, isolated per test module.

Isolation (why it is robust): the reference events travel on fixed topics (``orders``, ``payments``…)
named by the folders of ``schemas/``. Each module copies ``schemas/`` into its tmp dir with every topic
folder suffixed (``orders-1a2b3c4d``…), so its services read and write topics no other test touches, and
registers its own subjects. Each service runs under a suffixed name too (``payment-1a2b3c4d``), so its
consumer group, retry and DLQ topics and its store file are its own; its state tables keep their fixed
names (``payment_payments``), which only matters on PostgreSQL, where every row is keyed by a fresh
order id. Outputs are read by a :class:`Tap` that follows every shop topic from the start and decodes
each record; tests look events up by order id.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from choreo.config import Settings
from choreo.envelope import Envelope
from choreo.events import Event, bind
from choreo.idempotency import IdempotencyStore, open_store
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.publisher import Publisher
from choreo.runtime.worker import Worker
from choreo.schemas.catalog import SchemaCatalog
from choreo.serde.avro import AvroEventSerde
from choreo.service import Service
from choreo.state import fetchone
from choreo.testing.processes import wait_until
from services.events import ALL_EVENTS, OrderLine, OrderPlaced
from tests.support.workers import running as run_on_thread

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
SHOP_TOPICS = tuple(sorted(p.name for p in SCHEMAS.iterdir() if p.is_dir()))


def copy_schemas(target: Path, suffix: str) -> Path:
    """``schemas/`` copied under ``target`` with every topic folder named ``<topic>-<suffix>``."""
    for topic in SHOP_TOPICS:
        shutil.copytree(SCHEMAS / topic, target / f"{topic}-{suffix}")
    return target


@dataclass
class Seen:
    """One decoded record of a shop topic."""

    topic: str
    key: str
    type_name: str
    event: Event
    headers: dict[str, str]


@dataclass
class ShopEnv:
    settings: Settings
    suffix: str
    catalog: SchemaCatalog
    kafka_config: dict[str, Any]
    tap: Tap = field(init=False)

    def topic(self, name: str) -> str:
        return f"{name}-{self.suffix}"

    def service_name(self, service: Service) -> str:
        return f"{service.name}-{self.suffix}"

    def publish(self, *events: Event, correlation_id: str | None = None) -> list[Envelope]:
        """Publish root events, in order, and wait for the broker's acknowledgements."""
        with Publisher.from_settings(self.settings, source="test") as publisher:
            return [publisher.publish(e, correlation_id=correlation_id) for e in events]

    def processed(self, service: Service, envelopes: list[Envelope], timeout_s: float = 30.0) -> None:
        """Wait until ``service`` (running here) recorded every one of these events as processed."""
        store = self.store(service)
        ids = [e.event_id for e in envelopes]
        try:
            wait_until(lambda: store.seen(self.service_name(service), ids) == set(ids), timeout_s,
                       interval_s=0.05, message=f"{service.name} processed {len(ids)} events")
        finally:
            store.close()

    def row(self, service: Service, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row of ``service``'s own state."""
        store = self.store(service)
        try:
            with store.transaction(self.service_name(service)) as tx:
                return fetchone(tx, sql, params)
        finally:
            store.close()

    def store(self, service: Service) -> IdempotencyStore:
        """A store connection of ``service`` as it runs here (same file / database as its worker)."""
        return open_store(self.settings, self.service_name(service))


def make_env(kafka_config: dict[str, Any], registry_url: str, root: Path, **settings: Any) -> ShopEnv:
    suffix = uuid.uuid4().hex[:8]
    schemas_dir = copy_schemas(root / "schemas", suffix)
    env = ShopEnv(Settings(bootstrap_servers=kafka_config["bootstrap.servers"], schema_registry_url=registry_url,
                           state_dir=root / "state", schemas_dir=schemas_dir, topic_partitions=8, **settings),
                  suffix, SchemaCatalog.load(schemas_dir), kafka_config)
    ensure_topics(kafka_config, [TopicSpec(env.topic(t), 8) for t in SHOP_TOPICS])
    env.tap = Tap(env)
    return env


@contextmanager
def running(service: Service, env: ShopEnv, **worker_options: Any) -> Iterator[Worker]:
    """Run ``service`` (under its suffixed name) on a thread until the block ends (the worker creates
    its state tables at start)."""
    renamed = dataclasses.replace(service, name=env.service_name(service))
    with run_on_thread(renamed, env, **worker_options) as worker:
        yield worker


class Tap:
    """Follows every shop topic of ``env`` from the start on a thread and decodes what it reads."""

    def __init__(self, env: ShopEnv) -> None:
        self._bindings = {b.type_name: b for b in (bind(c, env.catalog) for c in ALL_EVENTS)}
        self._serde = AvroEventSerde(SchemaRegistryClient(env.settings.registry_client_config()))
        self._consumer = Consumer({**env.kafka_config, "group.id": f"tap-{env.suffix}",
                                   "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        topics = [env.topic(t) for t in SHOP_TOPICS]
        metadata = self._consumer.list_topics(timeout=10).topics
        self._consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics
                               for p in metadata[t].partitions])
        self._seen: list[Seen] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="shop-tap", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            while not self._stop.is_set():
                for message in self._consumer.consume(500, 0.1):
                    if message.error() is not None:
                        continue
                    headers = {k: v.decode() for k, v in (message.headers() or []) if v is not None}
                    binding = self._bindings.get(headers.get("ce_type", ""))
                    if binding is None:
                        continue
                    seen = Seen(message.topic(), (message.key() or b"").decode(), binding.type_name,
                                self._serde.decode(binding, message.value()), headers)
                    with self._lock:
                        self._seen.append(seen)
        except BaseException as exc:  # reported by wait_for instead of dying silently
            self.error = exc
            raise
        finally:
            self._consumer.close()

    def events(self, key: str, name: str | None = None) -> list[Seen]:
        """What was read for ``key`` (an order id), optionally of one short type name, in read order."""
        if self.error is not None:
            raise AssertionError(f"the shop tap failed: {self.error!r}") from self.error
        with self._lock:
            return [s for s in self._seen if s.key == key and (name is None or s.type_name.endswith("." + name))]

    def names(self, key: str) -> list[str]:
        return [s.type_name.rsplit(".", 1)[1] for s in self.events(key)]

    def wait_for(self, key: str, name: str, count: int = 1, timeout_s: float = 30.0) -> list[Seen]:
        """Wait until ``count`` events of type ``name`` were read for ``key``; return them."""
        try:
            wait_until(lambda: len(self.events(key, name)) >= count, timeout_s, interval_s=0.02,
                       message=f"{count} × {name} for {key}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; saw {self.names(key)}") from None
        return self.events(key, name)

    def quiet(self, key: str, seconds: float) -> list[str]:
        """Wait ``seconds`` more and return every event name read for ``key`` (to prove nothing else came)."""
        time.sleep(seconds)
        return self.names(key)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def order(order_id: str | None = None, *, customer: str = "c-1", sku: str = "sku-1", quantity: int = 1,
          price: int = 1999, deadline: datetime | None = None, lines: list[OrderLine] | None = None,
          placed_at: datetime | None = None) -> OrderPlaced:
    """An OrderPlaced aimed at one rule (the customer id and SKU prefixes select the outcome)."""
    lines = lines or [OrderLine(sku=sku, quantity=quantity, unit_price_minor=price)]
    return OrderPlaced(order_id=order_id or f"o-{uuid.uuid4().hex[:12]}", customer_id=customer, lines=lines,
                       total_minor=sum(line.quantity * line.unit_price_minor for line in lines),
                       currency="EUR", placed_at=placed_at or datetime.now(UTC), deadline=deadline)


def new_id(prefix: str = "o") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
