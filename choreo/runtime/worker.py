"""The consumer loop of one service process: consume a batch, process it, store offsets, repeat.

Delivery: at least once. Offsets are stored (``enable.auto.offset.store=false``) only after a batch's
outputs are acknowledged and its inputs marked processed; librdkafka auto-commits stored offsets every
second, and the worker commits synchronously when partitions are revoked and on shutdown.
Because a batch is finished before the next ``consume()`` — the only place rebalance callbacks run —
a revocation never finds half-done work: nothing is lost and nothing is committed twice.

Stopping (SIGTERM/Ctrl-C → :meth:`Worker.stop`): no new batch is taken, the current one completes,
the producer flushes, offsets are committed and the consumer leaves the group, within ``shutdown_timeout_s``.
Threads: the loop runs on the thread that calls :meth:`run`; :meth:`stop` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from choreo.config import Settings
from choreo.errors import ChoreoError, InfrastructureError
from choreo.idempotency import IdempotencyStore, open_store
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.kafka.producer import ReliableProducer
from choreo.runtime.batch import BatchProcessor
from choreo.runtime.failures import FailurePolicy, LogAndSkip
from choreo.serde.avro import AvroEventSerde
from choreo.service import BoundService

log = logging.getLogger(__name__)


def consumer_config(settings: Settings, group: str, **overrides: Any) -> dict[str, Any]:
    """librdkafka consumer settings for a service's group (pass-through options applied)."""
    return settings.librdkafka(**{
        "group.id": group,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.session_timeout_ms // 4),
        "fetch.wait.max.ms": settings.fetch_wait_max_ms,
        "max.poll.interval.ms": 300000,
        **overrides,
    })


class Worker:
    """Runs one bound service: one consumer, one producer, one store, one thread."""

    def __init__(self, bound: BoundService, settings: Settings, *, batch_size: int = 500,
                 poll_timeout_s: float = 0.5, store: IdempotencyStore | None = None,
                 failures: FailurePolicy | None = None, shutdown_timeout_s: float = 30.0) -> None:
        self.bound = bound
        self.settings = settings
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._stop = threading.Event()
        self._store = store
        self._failures = failures or LogAndSkip(bound.name)
        self.ready = threading.Event()
        self.batches = 0

    def stop(self) -> None:
        """Ask the loop to finish its batch and shut down (thread-safe, idempotent)."""
        self._stop.set()

    def ensure_topics(self) -> None:
        """Create the topics this service reads and every catalog topic it may emit to."""
        topics = set(self.bound.topics) | set(self.bound.catalog.topics())
        ensure_topics(self.settings.librdkafka(), [
            TopicSpec(t, self.settings.topic_partitions, self.settings.topic_replication_factor) for t in topics
        ])

    def run(self) -> None:
        """Consume until stopped. Raises InfrastructureError if the stack stays unreachable."""
        self.ensure_topics()
        store = self._store or open_store(self.settings, self.bound.name)
        producer = ReliableProducer(self.settings.librdkafka())
        registry = SchemaRegistryClient(self.settings.registry_client_config())
        loop = asyncio.new_event_loop()
        processor = BatchProcessor(self.bound, serde=AvroEventSerde(registry), producer=producer,
                                   store=store, failures=self._failures, loop=loop)
        consumer = Consumer(consumer_config(self.settings, self.bound.name))
        consumer.subscribe(self.bound.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("service %s consuming %s", self.bound.name, ", ".join(self.bound.topics))
        try:
            self._loop(consumer, processor)
        finally:
            self._shutdown(consumer, producer, store)
            loop.close()

    def _loop(self, consumer: Consumer, processor: BatchProcessor) -> None:
        while not self._stop.is_set():
            messages = consumer.consume(self.batch_size, self.poll_timeout_s)
            if not messages:
                processor.producer.poll()
                continue
            self._run_batch(consumer, processor, messages)

    def _run_batch(self, consumer: Consumer, processor: BatchProcessor, messages: Sequence[Any]) -> None:
        """Process and finish one batch; on an infrastructure failure rewind and try it again."""
        backoff_s = 0.2
        while True:
            try:
                outcome = processor.process(messages)
                processor.finish()
                break
            except (InfrastructureError, ChoreoError, KafkaException) as exc:
                if self._stop.is_set():
                    raise
                log.error("batch failed, will re-run it service=%s error=%s", self.bound.name, exc)
                time.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
        if outcome.offsets:
            consumer.store_offsets(offsets=outcome.offsets)
        self.batches += 1

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned service=%s partitions=%s", self.bound.name,
                 [(p.topic, p.partition) for p in partitions])
        self.ready.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Runs inside consume(): the previous batch is finished and its offsets stored.
        log.info("revoked service=%s partitions=%s", self.bound.name,
                 [(p.topic, p.partition) for p in partitions])
        self._commit(consumer)

    def _commit(self, consumer: Consumer) -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit failed service=%s error=%s", self.bound.name, exc)

    def _shutdown(self, consumer: Consumer, producer: ReliableProducer, store: IdempotencyStore) -> None:
        producer.close(self.shutdown_timeout_s)
        self._commit(consumer)
        consumer.close()  # leaves the group so partitions move at once, not after session timeout
        if self._store is None:
            store.close()
        log.info("service %s stopped after %d batches", self.bound.name, self.batches)
