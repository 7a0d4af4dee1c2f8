"""Helpers of the end-to-end saga test: the order mix, a rate-limited placer, a topic reader and the audit.

Everything here looks at the shop from the outside, the way an operator would:

- the **mix** writes SPEC §7's rules down again (never imported from ``services.rules``), so a rule the
  shop gets wrong shows up as a mismatch instead of agreeing with itself;
- the **placer** talks to the order API over HTTP only (``POST /orders``, ``GET /orders/{id}``);
- the **reader** reads every shop topic to its end with a plain confluent-kafka consumer and decodes the
  Confluent wire format with the official ``SchemaRegistryClient`` and fastavro (not choreo's serde);
- the **audit** holds what was read plus the services' SQLite state tables and returns each broken
  invariant as one readable line naming the order, so a failure says exactly what went wrong.
"""

from __future__ import annotations

import io
import json
import random
import sqlite3
import struct
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

SHOP_TOPICS = ("orders", "payments", "fraud", "inventory", "shipping", "notifications")
SERVICES = ("order", "payment", "fraud", "inventory", "shipping", "notification")
TERMINAL_EVENTS = {"OrderCompleted": "completed", "OrderCancelled": "cancelled", "OrderExpired": "expired"}
CARD_LIMIT_MINOR = 500_000  # SPEC §7
AMPLE_STOCK = 1_000_000  # what every SKU but sold-out… starts with (SPEC §7: "ample"; services/inventory.py)
CATALOGUE = (("tea-sencha", 1_250), ("mug-blue", 990), ("kettle-steel", 4_990), ("beans-1kg", 2_450),
             ("filter-paper", 350), ("grinder-hand", 8_900))


# -- the order mix -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """How an order must end: ``status`` and ``reason`` as ``GET /orders/{id}`` shows them."""

    status: str
    reason: str | None

    def __str__(self) -> str:
        return self.status if self.reason in (None, self.status) else f"{self.status}/{self.reason}"


def expected_outcome(customer_id: str, skus: Iterable[str], total_minor: int) -> Outcome:
    """SPEC §7's table, applied to an order's contents (the mix never combines two special cases)."""
    if customer_id.startswith("fraud-"):
        return Outcome("cancelled", "fraud-rejected")
    if total_minor > CARD_LIMIT_MINOR:
        return Outcome("cancelled", "payment-declined")
    if any(sku.startswith("sold-out") for sku in skus):
        return Outcome("cancelled", "stock-unavailable")
    if customer_id.startswith("slow-"):
        return Outcome("expired", "expired")
    return Outcome("completed", None)  # plain and flaky- alike


RULE_WEIGHTS = {"plain": 15, "declined": 1, "sold-out": 1, "fraud": 1, "flaky": 1, "slow": 1}


def order_body(rule: str, rng: random.Random, slow_ttl_s: float) -> dict[str, Any]:
    """A ``POST /orders`` body aimed at ``rule`` and no other (one to three lines of shared SKUs)."""
    number = rng.randint(1, 9_999)
    customer = {"fraud": "fraud", "flaky": "flaky", "slow": "slow"}.get(rule, "cust")
    lines = [{"sku": sku, "quantity": rng.randint(1, 3), "unit_price_minor": price}
             for sku, price in rng.sample(CATALOGUE, rng.randint(1, 3))]
    if rule == "declined":
        lines.append({"sku": "piano-grand", "quantity": 1, "unit_price_minor": CARD_LIMIT_MINOR + 1})
    elif rule == "sold-out":  # all or nothing: the ordinary lines must not be reserved either
        lines.append({"sku": "sold-out-lamp", "quantity": 1, "unit_price_minor": 2_900})
    body: dict[str, Any] = {"customer_id": f"{customer}-{number}", "lines": lines, "currency": "EUR"}
    if rule == "slow":
        body["max_ttl_s"] = slow_ttl_s
    return body


def plan_orders(count: int, seed: int, slow_ttl_s: float) -> list[tuple[str, dict[str, Any]]]:
    """``count`` (rule, body) pairs: per 20 orders 15 plain and one of each special rule, shuffled."""
    rng = random.Random(seed)
    block = [rule for rule, weight in RULE_WEIGHTS.items() for _ in range(weight)]
    rules: list[str] = []
    while len(rules) < count:
        rng.shuffle(block)
        rules += block
    return [(rule, order_body(rule, rng, slow_ttl_s)) for rule in rules[:count]]


def body_outcome(body: dict[str, Any]) -> Outcome:
    total = sum(line["quantity"] * line["unit_price_minor"] for line in body["lines"])
    return expected_outcome(body["customer_id"], (line["sku"] for line in body["lines"]), total)


# -- placing and polling -----------------------------------------------------------------------------------
@dataclass
class PlacedOrder:
    """One order of the run: its rule and body, the id the API gave it, and how placing it went."""

    index: int
    rule: str
    body: dict[str, Any]
    order_id: str | None = None
    job_id: str | None = None  # the 202 body's job_id
    progress_url: str | None = None  # the 202 body's progress_url
    location: str | None = None  # the 202's Location header
    accepted_at: float | None = None  # time.monotonic() when the 202 came
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    view: dict[str, Any] | None = None  # the last GET /orders/{id} answer

    @property
    def expected(self) -> Outcome:
        return body_outcome(self.body)

    @property
    def terminal(self) -> bool:
        return self.view is not None and self.view.get("status") != "running"


class Placer:
    """Places the planned orders at ``rate`` per second on a background thread pool.

    An order whose POST fails (connection refused or reset while the order service is down, a 503) is
    retried until ``give_up_s`` has passed; each planned order counts once, under the id of the 202 that
    finally answered. A POST that failed after the server had accepted it leaves an order nobody holds
    the id of: the audit finds it in the topics and checks it like any other.
    """

    def __init__(self, base_url: str, planned: list[tuple[str, dict[str, Any]]], *, rate: float,
                 workers: int = 16, give_up_s: float = 60.0) -> None:
        self.base_url, self.rate, self.workers, self.give_up_s = base_url, rate, workers, give_up_s
        self.orders = [PlacedOrder(i, rule, body) for i, (rule, body) in enumerate(planned)]
        self._accepted = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="placer", daemon=True)
        self.elapsed_s = 0.0

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    def start(self) -> Placer:
        self._thread.start()
        return self

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"placing did not end within {timeout_s:.0f}s"

    def _run(self) -> None:
        started = time.monotonic()
        limits = httpx.Limits(max_connections=self.workers, max_keepalive_connections=self.workers)
        with httpx.Client(base_url=self.base_url, timeout=10.0, limits=limits) as http, \
                ThreadPoolExecutor(self.workers, thread_name_prefix="place") as pool:
            futures = []
            for order in self.orders:
                delay = started + order.index / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the load, not waiting for a condition
                futures.append(pool.submit(self._place, http, order))
            for future in futures:
                future.result()
        self.elapsed_s = time.monotonic() - started

    def _place(self, http: httpx.Client, order: PlacedOrder) -> None:
        give_up = time.monotonic() + self.give_up_s
        while order.order_id is None and time.monotonic() < give_up:
            order.attempts += 1
            try:
                answer = http.post("/orders", json=order.body)
            except httpx.HTTPError as exc:
                order.errors.append(type(exc).__name__)
            else:
                if answer.status_code == 202:
                    accepted = answer.json()
                    order.job_id, order.progress_url = accepted.get("job_id"), accepted.get("progress_url")
                    order.location, order.accepted_at = answer.headers.get("location"), time.monotonic()
                    order.order_id = str(accepted["order_id"])  # set last: other threads read order_id first
                    with self._lock:
                        self._accepted += 1
                    return
                order.errors.append(f"HTTP {answer.status_code}")
                if answer.status_code < 500:
                    return  # the body is wrong: retrying cannot help (the audit reports it)
            time.sleep(0.2)  # backoff before asking a restarting service again


def poll_until_terminal(base_url: str, orders: list[PlacedOrder], timeout_s: float) -> list[PlacedOrder]:
    """``GET /orders/{id}`` for every accepted order until all are terminal; returns those still running."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base_url, timeout=5.0) as http, ThreadPoolExecutor(8) as pool:
        def refresh(order: PlacedOrder) -> None:
            try:
                answer = http.get(f"/orders/{order.order_id}")
            except httpx.HTTPError:
                return  # asked again next round
            if answer.status_code == 200:
                order.view = answer.json()

        while True:
            running = [o for o in orders if o.order_id is not None and not o.terminal]
            if not running or time.monotonic() > deadline:
                return running
            round_started = time.monotonic()
            list(pool.map(refresh, running))
            time.sleep(max(0.0, 0.3 - (time.monotonic() - round_started)))  # poll interval


# -- reading the topics ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    """One decoded record of a shop topic (the first copy of its ``ce_id``)."""

    topic: str
    partition: int
    offset: int
    key: str
    type_name: str  # short name: ``PaymentAuthorized``
    ce_id: str
    value: dict[str, Any]
    headers: dict[str, str]


class WireDecoder:
    """Confluent wire format (magic 0, 4-byte schema id, Avro body) → dict, schemas from the registry."""

    def __init__(self, registry_url: str) -> None:
        self.registry = SchemaRegistryClient({"url": registry_url})
        self._schemas: dict[int, Any] = {}

    def decode(self, value: bytes) -> dict[str, Any]:
        magic, schema_id = struct.unpack(">bI", value[:5])
        assert magic == 0, f"not the Confluent wire format (magic byte {magic})"
        if schema_id not in self._schemas:
            text = self.registry.get_schema(schema_id).schema_str
            self._schemas[schema_id] = fastavro.parse_schema(json.loads(text))
        decoded = fastavro.schemaless_reader(io.BytesIO(value[5:]), self._schemas[schema_id])
        assert isinstance(decoded, dict)
        return decoded


@dataclass
class TopicRead:
    """Every record of the topics read, deduplicated by ``ce_id``, and how many copies were dropped."""

    records: list[Record]
    raw_counts: Counter[str]  # records per topic, duplicates included
    duplicates: Counter[str]  # copies of an already-seen ce_id, per topic


def read_to_end(bootstrap: str, topics: Iterable[str], *, timeout_s: float = 30.0) -> dict[str, list[Any]]:
    """Every record of ``topics`` now, per topic, up to each partition's EOF (no group is joined).

    The end is PARTITION_EOF from the fetch (Tansu's ListOffsets(latest) is not the high watermark).
    A topic that does not exist reads as empty.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"saga-audit-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "fetch.wait.max.ms": 10, "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(timeout=10).topics
        wanted = [(t, p) for t in topics if t in metadata for p in metadata[t].partitions]
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in wanted])
        out: dict[str, list[Any]] = {t: [] for t in topics}
        at_end: set[tuple[str, int]] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(wanted):
            assert time.monotonic() < deadline, f"topics not read to the end in {timeout_s}s: " \
                                                f"{sorted(set(wanted) - at_end)}"
            for message in consumer.consume(1000, 0.1):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add((message.topic(), message.partition()))
                        continue
                    raise AssertionError(f"reading {message.topic()}: {error}")
                at_end.discard((message.topic(), message.partition()))  # a record after EOF: read on
                out[message.topic()].append(message)
        return out
    finally:
        consumer.close()


def read_shop(bootstrap: str, decoder: WireDecoder, topics: Iterable[str] = SHOP_TOPICS) -> TopicRead:
    """The shop topics decoded, one :class:`Record` per distinct ``ce_id`` (at-least-once may repeat one)."""
    raw_counts: Counter[str] = Counter()
    duplicates: Counter[str] = Counter()
    seen: set[str] = set()
    records: list[Record] = []
    for topic, messages in read_to_end(bootstrap, topics).items():
        raw_counts[topic] = len(messages)
        for message in messages:
            headers = {k: v.decode() for k, v in (message.headers() or []) if v is not None}
            ce_id = headers["ce_id"]
            if ce_id in seen:
                duplicates[topic] += 1
                continue
            seen.add(ce_id)
            records.append(Record(topic, message.partition(), message.offset(), (message.key() or b"").decode(),
                                  headers["ce_type"].rsplit(".", 1)[-1], ce_id, decoder.decode(message.value()),
                                  headers))
    return TopicRead(records, raw_counts, duplicates)


# -- the services' state -----------------------------------------------------------------------------------
def table(state_dir: Path, service: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``service``'s SQLite store (``$CHOREO_STATE_DIR/<service>.sqlite3``), opened read-only."""
    path = state_dir / f"{service}.sqlite3"
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


@dataclass
class Stores:
    """The state tables the audit compares with the topics (see each service module's STATE_DDL)."""

    orders: dict[str, tuple[str, str | None]]  # order_id → (status, reason)
    payments: dict[str, tuple[str, str | None, int]]  # order_id → (status, payment_id, amount_minor)
    reservations: dict[str, tuple[str, str | None, dict[str, int]]]  # order_id → (status, id, lines)
    stock: dict[str, tuple[int, int, int, int]]  # sku → (available, reserved, released, shipped)
    shipments: dict[str, tuple[str, str | None]]  # order_id → (status, shipment_id)
    notified: dict[str, str]  # order_id → outcome
    pending_timers: list[tuple[str, str]]  # (key, name) of order's timers still waiting

    @classmethod
    def load(cls, state_dir: Path) -> Stores:
        return cls(
            orders={r[0]: (r[1], r[2]) for r in table(
                state_dir, "order", "SELECT order_id, status, reason FROM order_orders")},
            payments={r[0]: (r[1], r[2], int(r[3])) for r in table(
                state_dir, "payment", "SELECT order_id, status, payment_id, amount_minor FROM payment_payments")},
            reservations={r[0]: (r[1], r[2], dict(json.loads(r[3]))) for r in table(
                state_dir, "inventory", "SELECT order_id, status, reservation_id, lines FROM inventory_reservations")},
            stock={r[0]: (int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in table(
                state_dir, "inventory", "SELECT sku, available, reserved, released, shipped FROM inventory_stock")},
            shipments={r[0]: (r[1], r[2]) for r in table(
                state_dir, "shipping", "SELECT order_id, status, shipment_id FROM shipping_shipments")},
            notified={r[0]: r[1] for r in table(
                state_dir, "notification", "SELECT order_id, outcome FROM notification_sent")},
            pending_timers=[(r[0], r[1]) for r in table(
                state_dir, "order", "SELECT key, name FROM choreo_timers")],
        )


# -- the audit ---------------------------------------------------------------------------------------------
@dataclass
class OrderTrail:
    """What the topics hold for one order: distinct events per type, in read order."""

    order_id: str
    events: dict[str, list[Record]] = field(default_factory=lambda: defaultdict(list))

    def ids(self, type_name: str) -> list[str]:
        return [r.ce_id for r in self.events.get(type_name, [])]

    def one(self, type_name: str) -> dict[str, Any] | None:
        records = self.events.get(type_name, [])
        return records[0].value if records else None

    def terminal(self) -> list[Record]:
        return [r for name in TERMINAL_EVENTS for r in self.events.get(name, [])]


def quantities(lines: Iterable[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line["sku"]] += int(line["quantity"])
    return dict(totals)


class SagaAudit:
    """The run's events and stores, and one check per invariant. Each check returns its violations."""

    def __init__(self, read: TopicRead, stores: Stores, placed: list[PlacedOrder]) -> None:
        self.read, self.stores, self.placed = read, stores, placed
        self.trails: dict[str, OrderTrail] = {}
        for record in read.records:
            order_id = str(record.value.get("order_id") or record.key)
            self.trails.setdefault(order_id, OrderTrail(order_id)).events[record.type_name].append(record)
        self.expected: dict[str, Outcome] = {}
        for order_id, trail in self.trails.items():
            placed_event = trail.one("OrderPlaced")
            if placed_event is not None:
                self.expected[order_id] = expected_outcome(
                    placed_event["customer_id"], (line["sku"] for line in placed_event["lines"]),
                    int(placed_event["total_minor"]))

    def _outcome(self, order_id: str) -> Outcome | None:
        terminal = self.trails[order_id].terminal()
        if len(terminal) != 1:
            return None
        record = terminal[0]
        status = TERMINAL_EVENTS[record.type_name]
        return Outcome(status, record.value.get("reason") if status == "cancelled" else
                       ("expired" if status == "expired" else None))

    # -- waiting for the saga to settle ------------------------------------------------------------------
    def unsettled(self) -> list[str]:
        """What is still on its way: missing terminal events, compensations, shipments, notifications."""
        waiting = []
        for order_id, expected in self.expected.items():
            trail = self.trails[order_id]
            if not trail.terminal():
                waiting.append(f"{order_id}: no terminal event yet")
                continue
            if expected.status != "completed":
                if trail.ids("PaymentAuthorized") and not trail.ids("PaymentRefunded"):
                    waiting.append(f"{order_id}: refund pending")
                if trail.ids("StockReserved") and not trail.ids("StockReleased"):
                    waiting.append(f"{order_id}: release pending")
            if not trail.ids("CustomerNotified") or order_id not in self.stores.notified:
                waiting.append(f"{order_id}: notification pending")
        for order_id, (status, _) in self.stores.orders.items():
            if status == "running" and order_id in self.expected:  # an unpublished row never finishes
                waiting.append(f"{order_id}: still running in order_orders")
        return waiting

    # -- the invariants ----------------------------------------------------------------------------------
    def check_every_placed_order_was_published(self) -> list[str]:
        """Each order the API accepted has exactly one OrderPlaced (one id), and nothing else was placed
        but the retries of a lost answer."""
        problems = [f"{o.index} ({o.rule}): never accepted: {o.errors}" for o in self.placed if o.order_id is None]
        for order in self.placed:
            if order.order_id is None:
                continue
            ids = self.trails.get(order.order_id, OrderTrail(order.order_id)).ids("OrderPlaced")
            if len(ids) != 1:
                problems.append(f"{order.order_id}: {len(ids)} OrderPlaced ids {ids}")
        for order_id, trail in self.trails.items():
            if order_id not in self.expected:
                problems.append(f"{order_id}: events {sorted(trail.events)} but no OrderPlaced")
        return problems

    def check_outcomes(self) -> list[str]:
        """Every order ends as its rule says: the API, exactly one terminal event id, and the order table
        agree with SPEC §7's table for the order's contents."""
        problems = []
        for order in self.placed:
            if order.order_id is None:
                continue
            view = order.view or {}
            seen = Outcome(str(view.get("status")), view.get("reason"))
            if seen != order.expected:
                problems.append(f"{order.order_id} ({order.rule}): API says {seen}, expected {order.expected}")
        for order_id, expected in self.expected.items():
            terminal = self.trails[order_id].terminal()
            if len(terminal) != 1:
                problems.append(f"{order_id}: {len(terminal)} terminal event ids "
                                f"{[(r.type_name, r.ce_id) for r in terminal]}, expected one ({expected})")
                continue
            outcome = self._outcome(order_id)
            if outcome != expected:
                problems.append(f"{order_id}: terminal event says {outcome}, expected {expected}")
            row = self.stores.orders.get(order_id)
            if row is None:
                problems.append(f"{order_id}: no row in order_orders")
            elif outcome is not None and Outcome(*row) != outcome:
                problems.append(f"{order_id}: order_orders says {Outcome(*row)}, the terminal event {outcome}")
        for order_id in self.stores.orders.keys() - self.expected.keys():
            problems.append(f"{order_id}: in order_orders as {Outcome(*self.stores.orders[order_id])} "
                            "but never published")
        return problems

    def check_payments(self) -> list[str]:
        """Never authorized or refunded twice; every refund undoes exactly one authorization (same amount
        and payment id); called-off orders are refunded, completed ones are not; payment_payments agrees."""
        problems = []
        for order_id, expected in self.expected.items():
            trail = self.trails[order_id]
            placed = trail.one("OrderPlaced") or {}
            auths, refunds, declines = (trail.ids(n) for n in ("PaymentAuthorized", "PaymentRefunded",
                                                                "PaymentDeclined"))
            if len(auths) > 1 or len(refunds) > 1 or len(declines) > 1:
                problems.append(f"{order_id}: {len(auths)} authorizations, {len(refunds)} refunds, "
                                f"{len(declines)} declines (distinct ids)")
            if auths and declines:
                problems.append(f"{order_id}: both authorized and declined")
            auth, refund = trail.one("PaymentAuthorized"), trail.one("PaymentRefunded")
            if expected.reason == "payment-declined":
                if auths or not declines:
                    problems.append(f"{order_id}: over the card limit but {len(auths)} authorizations, "
                                    f"{len(declines)} declines")
            elif expected.reason != "fraud-rejected" and not auths:
                problems.append(f"{order_id} ({expected}): never authorized")
            if auth is not None and auth["amount_minor"] != placed.get("total_minor"):
                problems.append(f"{order_id}: authorized {auth['amount_minor']}, "
                                f"order total {placed.get('total_minor')}")
            if refund is not None:
                if auth is None:
                    problems.append(f"{order_id}: refunded {refund['amount_minor']} without an authorization")
                elif (refund["amount_minor"], refund["payment_id"]) != (auth["amount_minor"], auth["payment_id"]):
                    problems.append(f"{order_id}: refund {refund['payment_id']}/{refund['amount_minor']} does not "
                                    f"match authorization {auth['payment_id']}/{auth['amount_minor']}")
            if expected.status == "completed" and refunds:
                problems.append(f"{order_id}: completed but refunded")
            if expected.status != "completed" and auths and not refunds:
                problems.append(f"{order_id} ({expected}): authorized, never refunded")
            row = self.stores.payments.get(order_id)
            want = ("refunded" if auths and refunds else "authorized" if auths else
                    "declined" if declines else None)
            if want is None:
                if row is not None and row[0] != "void-cancelled":
                    problems.append(f"{order_id}: payment_payments says {row[0]}, the topics show no payment")
            elif row is None or row[0] != want:
                problems.append(f"{order_id}: payment_payments says {row and row[0]}, the topics say {want}")
            elif auth is not None and (row[1], row[2]) != (auth["payment_id"], auth["amount_minor"]):
                problems.append(f"{order_id}: payment_payments {row[1:]} differs from the authorization")
        return problems

    def check_inventory(self) -> list[str]:
        """Reserved at most once, all lines or none; every release matches a reservation (same id) and
        happens at most once; called-off orders release what they held; inventory_reservations agrees."""
        problems = []
        for order_id, expected in self.expected.items():
            trail = self.trails[order_id]
            reserved, released, unavailable = (trail.ids(n) for n in ("StockReserved", "StockReleased",
                                                                        "StockUnavailable"))
            if len(reserved) > 1 or len(released) > 1 or len(unavailable) > 1:
                problems.append(f"{order_id}: {len(reserved)} reservations, {len(released)} releases, "
                                f"{len(unavailable)} unavailable (distinct ids)")
            reservation, release = trail.one("StockReserved"), trail.one("StockReleased")
            placed = trail.one("OrderPlaced") or {"lines": []}
            if reservation is not None and quantities(reservation["lines"]) != quantities(placed["lines"]):
                problems.append(f"{order_id}: reserved {quantities(reservation['lines'])}, "
                                f"ordered {quantities(placed['lines'])}")
            if expected.reason == "stock-unavailable" and (reserved or not unavailable):
                problems.append(f"{order_id}: sold-out SKU but {len(reserved)} reservations, "
                                f"{len(unavailable)} StockUnavailable")
            if release is not None and (reservation is None
                                        or release["reservation_id"] != reservation["reservation_id"]):
                problems.append(f"{order_id}: release {release['reservation_id']} matches no reservation "
                                f"({reservation and reservation['reservation_id']})")
            if expected.status == "completed" and (not reserved or released):
                problems.append(f"{order_id}: completed with {len(reserved)} reservations, {len(released)} releases")
            if expected.status != "completed" and reserved and not released:
                problems.append(f"{order_id} ({expected}): stock reserved, never released")
            row = self.stores.reservations.get(order_id)
            shipped = bool(trail.ids("ShipmentDispatched"))
            want = ("released" if reserved and released else "shipped" if reserved and shipped else
                    "reserved" if reserved else "unavailable" if unavailable else None)
            if want is None:
                if row is not None and row[0] != "void-cancelled":
                    problems.append(f"{order_id}: inventory_reservations says {row[0]}, the topics show none")
            elif row is None or row[0] != want:
                problems.append(f"{order_id}: inventory_reservations says {row and row[0]}, the topics say {want}")
        return problems

    def check_shipments(self) -> list[str]:
        """Completed orders have exactly one shipment (one ShipmentDispatched id); cancelled and expired
        orders none; shipping_shipments agrees."""
        problems = []
        for order_id, expected in self.expected.items():
            dispatched = self.trails[order_id].ids("ShipmentDispatched")
            if len(dispatched) != (1 if expected.status == "completed" else 0):
                problems.append(f"{order_id} ({expected}, ended {self._outcome(order_id)}): "
                                f"{len(dispatched)} ShipmentDispatched ids")
            row = self.stores.shipments.get(order_id)
            if dispatched and (row is None or row[0] != "dispatched"):
                problems.append(f"{order_id}: dispatched, but shipping_shipments says {row}")
            if not dispatched and row is not None and row[0] == "dispatched":
                problems.append(f"{order_id}: shipping_shipments says dispatched, no ShipmentDispatched")
        return problems

    def stock_from_events(self) -> dict[str, tuple[int, int, int]]:
        """Per SKU: units reserved, released and shipped according to the topics."""
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for trail in self.trails.values():
            reservation = trail.one("StockReserved")
            if reservation is None:
                continue
            lines = quantities(reservation["lines"])
            for sku, quantity in lines.items():
                totals[sku][0] += quantity
                if trail.ids("StockReleased"):
                    totals[sku][1] += quantity
                elif trail.ids("ShipmentDispatched"):
                    totals[sku][2] += quantity
        return {sku: (r, rel, s) for sku, (r, rel, s) in totals.items()}

    def check_stock_balance(self) -> list[str]:
        """Per SKU, reserved − released = shipped in the topics, inventory_stock holds the same three
        counters, and available = initial − reserved + released (no unit made or lost)."""
        problems = []
        events = self.stock_from_events()
        for sku, (reserved, released, shipped) in sorted(events.items()):
            if reserved - released != shipped:
                problems.append(f"{sku}: events reserved {reserved} − released {released} ≠ shipped {shipped}")
        for sku in sorted(events.keys() | self.stores.stock.keys()):
            reserved, released, shipped = events.get(sku, (0, 0, 0))
            available, t_reserved, t_released, t_shipped = self.stores.stock.get(sku, (AMPLE_STOCK, 0, 0, 0))
            if (t_reserved, t_released, t_shipped) != (reserved, released, shipped):
                problems.append(f"{sku}: inventory_stock reserved/released/shipped {t_reserved}/{t_released}/"
                                f"{t_shipped}, the events {reserved}/{released}/{shipped}")
            initial = 0 if sku.startswith("sold-out") else AMPLE_STOCK
            if available != initial - t_reserved + t_released:
                problems.append(f"{sku}: available {available} ≠ {initial} − {t_reserved} + {t_released}")
        return problems

    def check_notifications(self) -> list[str]:
        """One CustomerNotified (one id) and one notification_sent row per finished order, with its outcome."""
        problems = []
        for order_id, expected in self.expected.items():
            ids = self.trails[order_id].ids("CustomerNotified")
            if len(ids) != 1:
                problems.append(f"{order_id}: {len(ids)} CustomerNotified ids")
            if self.stores.notified.get(order_id) != expected.status:
                problems.append(f"{order_id}: notification_sent says {self.stores.notified.get(order_id)}, "
                                f"expected {expected.status}")
        return problems

    def check_no_pending_deadlines(self) -> list[str]:
        """Every order finished, so no deadline timer of the order service is left waiting."""
        return [f"order timer {name} of {key} still pending" for key, name in self.stores.pending_timers]

    def checks(self) -> dict[str, Callable[[], list[str]]]:
        return {"placed": self.check_every_placed_order_was_published, "outcomes": self.check_outcomes,
                "payments": self.check_payments, "inventory": self.check_inventory,
                "shipments": self.check_shipments, "stock": self.check_stock_balance,
                "notifications": self.check_notifications, "timers": self.check_no_pending_deadlines}

    def violations(self) -> dict[str, list[str]]:
        """Every check's violations, by check name (empty lists left out)."""
        found = {name: check() for name, check in self.checks().items()}
        return {name: problems for name, problems in found.items() if problems}

    def describe(self, order_id: str) -> str:
        """An order's events in read order (for a failure message)."""
        trail = self.trails.get(order_id)
        if trail is None:
            return f"{order_id}: nothing in the topics"
        records = sorted((r for rs in trail.events.values() for r in rs), key=lambda r: (r.topic, r.offset))
        return f"{order_id}: " + ", ".join(f"{r.type_name}@{r.topic}/{r.partition}:{r.offset}" for r in records)
