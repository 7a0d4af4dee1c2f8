"""The consumer loop of one service process: consume a batch, process it, store offsets, repeat.

Delivery: at least once. Offsets are stored (``enable.auto.offset.store=false``) only after a batch's
outputs are acknowledged and its inputs' processed marks are durable (the marks are written on a
writer thread while the next batch runs, see :mod:`choreo.runtime.marks`); librdkafka auto-commits
stored offsets every second, and the worker waits for the marks and commits synchronously when
partitions are revoked and on shutdown.
Because a batch is processed before the next ``consume()`` — the only place rebalance callbacks run —
a revocation never finds half-done work: it finds processed batches whose acknowledgements may still be
outstanding (up to the limits of :class:`~choreo.runtime.acks.AckGroup`), settles them, waits for their
marks and commits. Nothing is lost and nothing is committed twice.

Stopping (SIGTERM/Ctrl-C → :meth:`Worker.stop`): no new batch is taken, the current one completes,
the producer flushes, offsets are committed and the consumer leaves the group, within ``shutdown_timeout_s``.
Threads: the loop runs on the thread that calls :meth:`run`; :meth:`stop` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from choreo.config import Settings
from choreo.errors import ChoreoError
from choreo.idempotency import IdempotencyStore, open_store
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.kafka.producer import ReliableProducer
from choreo.retry.alerts import LogAlert, WebhookAlert
from choreo.retry.headers import now_ms
from choreo.retry.router import RetryRouter
from choreo.runtime.acks import FlushFailed
from choreo.runtime.backoff import Backoff
from choreo.runtime.batch import BatchOutcome, BatchProcessor, Pause
from choreo.runtime.failures import FailurePolicy
from choreo.runtime.tables import create_tables
from choreo.serde.avro import AvroEventSerde
from choreo.service import BoundService
from choreo.tasks import TASKS_TOPIC

log = logging.getLogger(__name__)

# Failures that are not a record's fault: the batch (or the settle) is tried again after a backoff.
# Store errors (a locked SQLite file, a PostgreSQL failover) are transient like broker ones.
_TRANSIENT = (ChoreoError, KafkaException, sqlite3.Error, psycopg.Error)


def consumer_config(settings: Settings, group: str, **overrides: Any) -> dict[str, Any]:
    """librdkafka consumer settings for a service's group.

    Pass-through options (``CHOREO_KAFKA_*``) may change the defaults here, but not the group id or
    manual offset storing: at-least-once delivery depends on those.
    """
    defaults = {
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.session_timeout_ms // 4),
        "fetch.wait.max.ms": settings.fetch_wait_max_ms,
        "max.poll.interval.ms": 300000,
        # Range gives partition i of every subscribed topic to the same member, so a key's domain
        # partition and its retry partitions stay together (ordered retries rely on it).
        "partition.assignment.strategy": "range",
    }
    return settings.librdkafka(defaults, **{"group.id": group, "enable.auto.offset.store": False, **overrides})


def required_topics(bound: BoundService, failure_topics: list[str]) -> set[str]:
    """Every topic a service needs: what it reads, every catalog topic it may emit to, retries and DLQ,
    and the task records' topic."""
    return set(bound.topics) | set(bound.catalog.topics()) | set(failure_topics) | {TASKS_TOPIC}


def topic_specs(settings: Settings, names: set[str]) -> list[TopicSpec]:
    return [TopicSpec(n, settings.topic_partitions, settings.topic_replication_factor) for n in sorted(names)]


def alert_hook(settings: Settings) -> LogAlert | WebhookAlert:
    """The dead-letter escalation configured in settings: a log line, and the webhook only when no
    progress service escalates. With ``CHOREO_PROGRESS_URL`` set, the progress service sends the one
    alert per job and cause (stored, so neither a redelivery nor a restart repeats it, and with the
    links to the job); a per-message POST from every service would page once per dead letter."""
    if settings.alert_webhook_url and not settings.progress_url:
        return WebhookAlert(settings.alert_webhook_url)  # no progress URL to link to, by the rule above
    return LogAlert(settings.progress_url)


class Worker:
    """Runs one bound service: one consumer, one producer, one store, one thread."""

    def __init__(self, bound: BoundService, settings: Settings, *, batch_size: int = 500,
                 batch_wait_s: float = 0.01, store: IdempotencyStore | None = None,
                 failures: FailurePolicy | None = None, shutdown_timeout_s: float = 30.0,
                 on_batch: Callable[[BatchOutcome], None] | None = None) -> None:
        self.bound = bound
        self.settings = settings
        self.batch_size = batch_size
        # consume() returns once batch_size records are there or batch_wait_s has passed: under load the
        # batches are full at once, and a lone event waits at most this long before it is handled.
        self.batch_wait_s = batch_wait_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._stop = threading.Event()
        self._store = store
        self._failures = failures or RetryRouter.for_service(bound, on_dead_letter=alert_hook(settings))
        self._processor: BatchProcessor | None = None  # the running one, for the revoke callback
        self._assigned: set[tuple[str, int]] = set()  # (topic, partition) currently ours
        self._paused: dict[TopicPartition, int] = {}  # retry partitions waiting for their head's due time
        self.on_batch = on_batch  # called on the loop thread after each finished batch
        self.ready = threading.Event()
        self.batches = 0
        self.handled = 0
        self.duplicates = 0
        self.parked = 0

    def stop(self) -> None:
        """Ask the loop to finish its batch and shut down (thread-safe, idempotent)."""
        self._stop.set()

    def subscribed_topics(self) -> list[str]:
        """Domain topics plus this service's retry topics (never its DLQ: that only replay reads)."""
        retry_topics = [t for t in self._failures.topics() if not t.endswith(".dlq")]
        return sorted(set(self.bound.topics) | set(retry_topics))

    def ensure_topics(self) -> None:
        """Create the topics this service reads, its retry/DLQ topics and every catalog topic it may emit to."""
        ensure_topics(self.settings.librdkafka(),
                      topic_specs(self.settings, required_topics(self.bound, self._failures.topics())))

    def run(self) -> None:
        """Consume until stopped. Raises InfrastructureError if the stack stays unreachable."""
        self.ensure_topics()
        store = self._store or open_store(self.settings, self.bound.name)
        create_tables(store, self.bound)
        loop = asyncio.new_event_loop()
        processor: BatchProcessor | None = None
        consumer: Consumer | None = None
        try:  # whatever was built is torn down below, even when a later step fails
            registry = SchemaRegistryClient(self.settings.registry_client_config())
            processor = BatchProcessor(self.bound, serde=AvroEventSerde(registry),
                                       producer=ReliableProducer(self.settings.librdkafka()),
                                       store=store, failures=self._failures, loop=loop,
                                       task_records=self.settings.task_records)
            processor.scope.settings = self.settings
            self._processor = processor
            consumer = Consumer(consumer_config(self.settings, self.bound.name))
            topics = self.subscribed_topics()
            consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
            log.info("service %s consuming %s; path %s", self.bound.name, ", ".join(topics),
                     processor.pipeline.describe())
            self._loop(consumer, processor)
        finally:
            self._shutdown(consumer, processor, store)
            loop.close()

    def _loop(self, consumer: Consumer, processor: BatchProcessor) -> None:
        while not self._stop.is_set():
            self._resume_due(consumer)
            messages = consumer.consume(self.batch_size, self._batch_wait())
            fired = processor.timer_source.due(now_ms())  # due timers join the batch, after its records
            if fired:
                messages = [*messages, *fired]
            pending: list[Sequence[Any]] = [messages] if messages else []
            # Delivery reports count as outstanding until served: serve them (per batch) before asking.
            processor.producer.poll()
            # Settle when it costs no waiting: nothing new came (the consumer is idle anyway), or every
            # output is already acknowledged. A failed settle hands back batches to handle again, before
            # the new ones (their records come first in their partitions).
            if len(processor.acks) and (not messages or not len(processor.producer)):
                pending[:0] = self._settle(consumer, processor)
            if pending:
                self._run_batches(consumer, processor, pending)
            self._store_offsets(consumer, processor.marks.completed())

    def _run_batches(self, consumer: Consumer, processor: BatchProcessor, pending: list[Sequence[Any]]) -> None:
        """Process batches in order; settle their acknowledgements when due (see ``acks``).

        An infrastructure failure while processing re-runs that batch after a backoff; a failed flush
        re-runs every batch it covered, oldest first, before any later one. A batch that is not due is
        settled by the loop once its outputs are acknowledged or the consumer is idle, so until the
        AckGroup's limits are reached the next batch does not wait for the broker's round trip (at low
        rates that wait is most of a hop's latency).
        """
        backoff = Backoff()
        while pending:
            messages = pending[0]
            try:
                outcome = processor.process(messages)
            except _TRANSIENT as exc:
                self._retry_later(exc, backoff)
                continue
            processor.defer(outcome, messages)
            pending.pop(0)
            for pause in outcome.pauses:
                self._pause(consumer, pause)
            if processor.acks.due():
                pending[:0] = self._settle(consumer, processor)

    def _settle(self, consumer: Consumer, processor: BatchProcessor) -> list[Sequence[Any]]:
        """Settle the unacknowledged batches; returns the batches to handle again if the flush failed."""
        backoff = Backoff()
        while True:
            try:
                outcomes = processor.settle(give_up=self._stop)
            except FlushFailed as exc:
                self._retry_later(exc, backoff)
                return exc.batches
            except _TRANSIENT as exc:
                self._retry_later(exc, backoff)  # the batches stay acknowledged in the group: settle again
                continue
            for outcome in outcomes:
                self._count(outcome)
            return []

    def _retry_later(self, exc: Exception, backoff: Backoff) -> None:
        if self._stop.is_set() or getattr(exc, "fatal", False):
            raise exc  # a fatal producer error needs a new process: exit, the supervisor restarts us
        log.error("batch failed, will try again service=%s error=%s", self.bound.name, exc)
        backoff.sleep()

    def _count(self, outcome: BatchOutcome) -> None:
        self.batches += 1
        self.handled += outcome.handled
        self.duplicates += outcome.duplicates
        self.parked += outcome.parked
        if self.on_batch is not None:
            self.on_batch(outcome)

    def _store_offsets(self, consumer: Consumer, batches: list[list[TopicPartition]]) -> None:
        """Store the offsets of batches whose marks are durable, oldest first.

        Offsets of partitions no longer assigned are left out: marks that became durable only after
        their partition was revoked (a slow store outlasting the revoke's wait) belong to the new owner,
        which re-reads those records and skips them as duplicates.
        """
        for offsets in batches:
            mine = [tp for tp in offsets if (tp.topic, tp.partition) in self._assigned]
            if not mine:
                continue
            try:
                consumer.store_offsets(offsets=mine)
            except KafkaException as exc:  # e.g. lost in a rebalance we have not been told about yet
                log.warning("storing offsets failed service=%s error=%s", self.bound.name, exc)

    def _pause(self, consumer: Consumer, pause: Pause) -> None:
        """Hold one retry partition at its not-yet-due head; every other partition keeps flowing."""
        partition = TopicPartition(pause.topic, pause.partition, pause.offset)
        consumer.pause([partition])
        consumer.seek(partition)
        self._paused[TopicPartition(pause.topic, pause.partition)] = pause.due_ms

    def _resume_due(self, consumer: Consumer) -> None:
        if not self._paused:
            return
        now = now_ms()
        due = [tp for tp, due_ms in self._paused.items() if due_ms <= now]
        if due:
            consumer.resume(due)
            for tp in due:
                del self._paused[tp]

    def _batch_wait(self) -> float:
        """Wake up in time for the earliest paused retry, so delays are kept to the millisecond."""
        if not self._paused:
            return self.batch_wait_s
        wait_s = (min(self._paused.values()) - now_ms()) / 1000
        return max(0.0, min(self.batch_wait_s, wait_s))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update((p.topic, p.partition) for p in partitions)
        if self._processor is not None:  # timers belong to the partition indexes of our domain topics
            domain = set(self.bound.topics)
            self._processor.timer_source.assigned(p for t, p in self._assigned if t in domain)
        log.info("assigned service=%s partitions=%s", self.bound.name,
                 [(p.topic, p.partition) for p in partitions])
        self.ready.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Runs inside consume(): every batch so far is processed; the unsettled ones are settled below.
        # librdkafka keeps a partition's pause flag across revoke and re-assign: resume what we paused,
        # or a retry partition that comes back to us would never be fetched again. On re-assignment
        # its head is read from the committed offset and paused again if still not due.
        paused = [tp for tp in (TopicPartition(p.topic, p.partition) for p in partitions) if tp in self._paused]
        if paused:
            consumer.resume(paused)
            for tp in paused:
                del self._paused[tp]
        log.info("revoked service=%s partitions=%s", self.bound.name,
                 [(p.topic, p.partition) for p in partitions])
        processor = self._processor
        if processor is not None:
            # With the eager (range) assignor every partition is revoked at once, so an unsettled
            # batch's records are re-read by whoever gets them next.
            self._settle_last(processor, "revoked")
            self._store_offsets(consumer, processor.marks.drain(self.shutdown_timeout_s))
        self._commit(consumer)
        self._assigned.difference_update((p.topic, p.partition) for p in partitions)
        if processor is not None:
            processor.timer_source.revoked()

    def _settle_last(self, processor: BatchProcessor, moment: str) -> None:
        """Settle once, without retrying: a batch left unsettled keeps its offsets unstored and is
        redelivered to whoever reads its partitions next."""
        try:
            for outcome in processor.settle():
                self._count(outcome)
        except Exception as exc:  # noqa: BLE001 - logged; nothing of those batches is recorded
            log.error("%s with unsettled batches service=%s error=%s", moment, self.bound.name, exc)

    def _commit(self, consumer: Consumer) -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit failed service=%s error=%s", self.bound.name, exc)

    def _shutdown(self, consumer: Consumer | None, processor: BatchProcessor | None,
                  store: IdempotencyStore) -> None:
        if processor is not None:
            self._settle_last(processor, "stopping")  # counted here; close() would settle uncounted
            durable = processor.close(self.shutdown_timeout_s)
            processor.producer.close(self.shutdown_timeout_s)
            if consumer is not None:
                self._store_offsets(consumer, durable)
        if consumer is not None:
            self._commit(consumer)
            consumer.close()  # leaves the group so partitions move at once, not after session timeout
        if self._store is None:
            store.close()
        log.info("service %s stopped after %d batches", self.bound.name, self.batches)
