"""Writing a job's records the way the runtime would (domain events with choreo headers, task records,
dead letters), and running the progress service on a thread, against per-test topics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

from choreo.config import Settings
from choreo.envelope import Envelope, caused_envelope, format_time, root_envelope, step_request_id
from choreo.events import Event, bind
from choreo.progress.service import ProgressService
from choreo.schemas.catalog import SchemaCatalog
from choreo.serde.avro import AvroEventSerde
from choreo.service import Service
from choreo.tasks import encode_task
from choreo.testing.processes import wait_until
from services import events as ev
from services import fraud, inventory, notification, order, payment, shipping
from tests.support.workers import on_thread

SERVICES: list[Service] = [order.service, payment.service, fraud.service, inventory.service, shipping.service,
                           notification.service]
SECRET_ERROR = "boom: card 4111-1111 refused by upstream"


@dataclass
class Written:
    """What a test wrote for one job: its envelopes and every payload value (to prove none leaks)."""

    job_id: str
    envelopes: dict[str, Envelope] = field(default_factory=dict)
    values: set[str] = field(default_factory=set)


class JobWriter:
    """Produces records as choreo's runtime does: Avro values through the registry, choreo headers."""

    def __init__(self, settings: Settings, catalog: SchemaCatalog, tasks_topic: str) -> None:
        self.catalog = catalog
        self.tasks_topic = tasks_topic
        self.serde = AvroEventSerde(SchemaRegistryClient(settings.registry_client_config()))
        self.producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random",
                                  "linger.ms": 2})

    def root(self, job: Written, name: str, event: Event, *, at: datetime | None = None) -> Envelope:
        binding = bind(type(event), self.catalog)
        envelope = root_envelope(binding.type_name, "test", event.entity_key(), correlation_id=job.job_id, now=at)
        return self._send(job, name, event, envelope)

    def emit(self, job: Written, name: str, cause: Envelope, service: str, event: Event, position: int = 0,
             *, at: datetime | None = None) -> Envelope:
        binding = bind(type(event), self.catalog)
        envelope = caused_envelope(cause, position=position, event_type=binding.type_name, source=service,
                                   subject=event.entity_key(), request_id=step_request_id(cause.event_id, service),
                                   time=format_time(at) if at else None)
        return self._send(job, name, event, envelope)

    def _send(self, job: Written, name: str, event: Event, envelope: Envelope) -> Envelope:
        binding = bind(type(event), self.catalog)
        value = self.serde.encode(binding, event)
        self.producer.produce(binding.topic, key=event.entity_key().encode(), value=value,
                              headers=envelope.to_headers())
        job.envelopes[name] = envelope
        job.values.update(_values(event.to_avro()))
        return envelope

    def task(self, job: Written, cause: Envelope, service: str, status: str = "completed", attempt: int = 1,
             started_ms: int | None = None) -> str:
        task_id = step_request_id(cause.event_id, service)
        started = started_ms or int(time.time() * 1000)
        self.producer.produce(self.tasks_topic, key=job.job_id.encode(),
                              value=encode_task(job.job_id, task_id, service, status, attempt, cause.event_id,
                                                cause.event_type, started, started + 3))
        return task_id

    def dead_letter(self, job: Written, cause: Envelope, service: str, event: Event) -> None:
        binding = bind(type(event), self.catalog)
        headers = [*cause.to_headers(), ("dlq-service", service.encode()), ("dlq-reason", b"retries-exhausted"),
                   ("dlq-error-type", b"UpstreamError"), ("dlq-error-message", SECRET_ERROR.encode()),
                   ("dlq-traceback", f"Traceback: {SECRET_ERROR}".encode()), ("dlq-attempts", b"3")]
        self.producer.produce(f"{service}.dlq", key=event.entity_key().encode(),
                              value=self.serde.encode(binding, event), headers=headers)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0


def leaf_values(record: Any) -> Iterator[Any]:
    """Every leaf of a decoded payload (nested records, arrays and maps walked), in order."""
    if isinstance(record, dict):
        for value in record.values():
            yield from leaf_values(value)
    elif isinstance(record, list):
        for value in record:
            yield from leaf_values(value)
    else:
        yield record


def _values(record: Any) -> Iterator[str]:
    """Every scalar value of a payload as text (short ones are too common to prove anything)."""
    for value in leaf_values(record):
        if isinstance(value, str | int | float) and not isinstance(value, bool) and len(str(value)) >= 4:
            yield str(value)


def without_links(body: dict[str, Any]) -> dict[str, Any]:
    """A job resource without its ``links`` (they depend on the base URL)."""
    return {k: v for k, v in body.items() if k != "links"}


def new_job() -> Written:
    return Written(job_id=str(uuid.uuid4()))


def placed(order_id: str, ttl_s: float = 30.0) -> ev.OrderPlaced:
    now = datetime.now(UTC)
    return ev.OrderPlaced(order_id=order_id, customer_id=f"cust-secret-{uuid.uuid4().hex[:6]}",
                          lines=[ev.OrderLine(sku="sku-hidden-77", quantity=2, unit_price_minor=12345)],
                          total_minor=24690, currency="EUR", placed_at=now, deadline=now + timedelta(seconds=ttl_s))


def happy_path(writer: JobWriter, job: Written, *, tasks: bool = True) -> None:
    """A completed order: every event of the saga and (``tasks``) a completed record for each step."""
    oid = f"o-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    root = writer.root(job, "placed", placed(oid))
    auth = writer.emit(job, "authorized", root, "payment", ev.PaymentAuthorized(
        order_id=oid, payment_id="pay-secret-1", amount_minor=24690, currency="EUR", authorized_at=now))
    fraud_ok = writer.emit(job, "fraud", root, "fraud", ev.FraudCheckPassed(order_id=oid, score=0.125))
    reserved = writer.emit(job, "reserved", auth, "inventory", ev.StockReserved(
        order_id=oid, reservation_id="res-secret-9", lines=[ev.ReservedLine(sku="sku-hidden-77", quantity=2)]))
    shipped = writer.emit(job, "shipped", reserved, "shipping", ev.ShipmentDispatched(
        order_id=oid, shipment_id="ship-secret-3", carrier="carrier-pigeon", tracking_number="TRK-998877"))
    done = writer.emit(job, "completed", shipped, "order", ev.OrderCompleted(
        order_id=oid, shipment_id="ship-secret-3", completed_at=now))
    if tasks:
        for cause, service in ((root, "order"), (root, "payment"), (root, "fraud"), (auth, "inventory"),
                               (fraud_ok, "shipping"), (reserved, "shipping"), (shipped, "order"),
                               (shipped, "inventory"), (done, "notification")):
            writer.task(job, cause, service)
    writer.flush()


@contextmanager
def running_progress(settings: Settings, tasks_topic: str, group: str, **options: Any
                     ) -> Iterator[tuple[ProgressService, str]]:
    """The progress service on a thread (HTTP on a free port) until the block ends; yields it and its URL."""
    service = ProgressService.from_services(SERVICES, settings, host="127.0.0.1", port=0, group=group,
                                            tasks_topic=tasks_topic, **options)
    service.start_http()
    with on_thread(service, service.consumer.ready, "progress"):
        yield service, f"http://127.0.0.1:{service.port}"


def wait_job(url: str, job_id: str, predicate: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    """GET the job until ``predicate(body)`` holds; the last body."""
    seen: dict[str, Any] = {}

    def check() -> bool:
        answer = httpx.get(f"{url}/jobs/{job_id}")
        if answer.status_code != 200:
            return False
        seen.clear()
        seen.update(answer.json())
        return bool(predicate(seen))

    try:
        wait_until(check, timeout_s, interval_s=0.05, message=f"job {job_id}")
    except Exception as exc:  # say what was last seen
        raise AssertionError(f"job {job_id} never matched; last: {seen}") from exc
    return dict(seen)
