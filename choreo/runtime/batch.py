"""One batch of records through one service: intake, the stages (runtime/stages.py), then mark and commit.

Contract (at least once, in order per partition):
1. Records are handled one after another in the order consumed, so a key's events keep partition order.
2. Emitted events are produced asynchronously; up to five batches share one flush (``acks``: one with
   ordered retries). Only when every record of a batch (outputs, retries, dead letters) is acknowledged
   are its inputs marked processed, and only once the marks are durable are its offsets stored (marks
   are written behind the consumer: see ``marks``). Ids handled in a batch not yet settled count as seen.
3. A crash anywhere re-runs the batch; deterministic output ids and the idempotency store turn the
   re-run into skipped duplicates downstream. Transactional handlers commit their state, the
   processed mark and their outputs (outbox) in one database transaction; a re-delivered one
   re-sends whatever of its outbox was not acknowledged.
Idempotency look-ups and marks are one store call per batch, not per record.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Message, TopicPartition

from choreo.envelope import format_time
from choreo.events import Event
from choreo.idempotency import DEFAULT_RETENTION, IdempotencyStore
from choreo.kafka.producer import ReliableProducer
from choreo.observability import metrics
from choreo.runtime.acks import AckGroup, UnackedBatch
from choreo.runtime.failures import FailurePolicy
from choreo.runtime.intake import Intake, Pause
from choreo.runtime.joins import expire_closed
from choreo.runtime.marks import MarkWriter
from choreo.runtime.ordering import KeyOrdering
from choreo.runtime.pipeline import Pipeline, Status
from choreo.runtime.routes import Route, Routes
from choreo.runtime.stages import BatchScope, build_stages
from choreo.runtime.timers import Effect, TimerBook, TimerSource
from choreo.serde.avro import AvroEventSerde
from choreo.service import BoundService

__all__ = ["BatchOutcome", "BatchProcessor", "Pause", "Route"]

_SWEEP_INTERVAL_S = 3600.0

log = logging.getLogger(__name__)


@dataclass
class BatchOutcome:
    """What a batch did; its ``offsets`` are stored by the caller once ``marks.completed()`` hands them back."""

    offsets: list[TopicPartition] = field(default_factory=list)
    pauses: list[Pause] = field(default_factory=list)
    handled: int = 0
    duplicates: int = 0
    parked: int = 0
    failed: int = 0


class BatchProcessor:
    """Runs batches for one bound service. Owns no Kafka consumer; uses the producer and store given.

    Thread-safety: one instance per consumer thread.
    """

    def __init__(self, bound: BoundService, *, serde: AvroEventSerde, producer: ReliableProducer,
                 store: IdempotencyStore, failures: FailurePolicy, loop: asyncio.AbstractEventLoop,
                 task_records: bool = True) -> None:
        self.bound = bound
        self.service = bound.name
        self.serde = serde
        self.producer = producer
        self.store = store
        self.failures = failures
        self.ordering = KeyOrdering(self.service, store) if bound.service.ordered_retries else None
        self.marks = MarkWriter(store, self.service)
        # Ordered retries write their parking changes per batch, before the next batch reads them.
        self.acks = AckGroup(producer, max_batches=1 if self.ordering is not None else 5)
        self.routes = Routes(bound, loop, serde)
        self.intake = Intake(self.service, self.routes.of,
                             lambda message, exc: failures.on_poison(message, exc, producer))
        self.timer_source = TimerSource(self.service, store)
        self.scope = BatchScope(self.service)
        self.scope.timers = TimerBook(self.service, store, self._encode_for_timer, self.timer_source.scheduled)
        self.pipeline = Pipeline(build_stages(scope=self.scope, bound=bound, serde=serde, producer=producer,
                                              store=store, failures=failures, ordering=self.ordering,
                                              seen=self._seen, task_records=task_records))
        self._effects: list[Effect] = []
        self._next_sweep = 0.0  # monotonic time of the next sweep of old closed-join markers

    def _encode_for_timer(self, event: Event) -> tuple[str, bytes]:
        binding = self.bound.output_binding(type(event))
        return binding.type_name, self.serde.encode(binding, event)

    # -- the batch -------------------------------------------------------------------------------

    def process(self, messages: Sequence[Message]) -> BatchOutcome:
        """Handle ``messages`` and queue every resulting record; the caller then :meth:`defer`s the batch."""
        self._clear_counters()  # a re-run batch counts once: what a failed attempt counted is dropped
        self.scope.reset(format_time(datetime.now(UTC)))
        self.scope.timers.take_deferred()  # what a failed attempt deferred is dropped: the re-run defers it again
        recs, offsets, pauses = self.intake.take(messages)
        self.pipeline.run(recs)
        self._effects = self.scope.timers.take_deferred()
        fired = [rec.event_id for rec in recs if rec.is_timer]
        if fired:
            self._effects.append(self.timer_source.fired_effect(fired))
        outcome = BatchOutcome(offsets=offsets, pauses=pauses)
        for rec in recs:
            status = rec.status
            if status == Status.HANDLED:
                outcome.handled += 1
            elif status == Status.DUPLICATE:
                outcome.duplicates += 1
            elif status == Status.PARKED:
                outcome.parked += 1
            else:
                outcome.failed += 1
        return outcome

    def defer(self, outcome: BatchOutcome, messages: Sequence[Message]) -> None:
        """Hand the processed batch to :attr:`acks`; it is recorded when the group is settled."""
        self.acks.add(UnackedBatch(messages, outcome, self.scope.marks, self.scope.outbox_sent, self._effects))
        self._flush_counters()

    def settle(self, *, give_up: threading.Event | None = None) -> list[BatchOutcome]:
        """Wait for every unsettled batch's acks, then record what they processed, oldest first.

        FlushFailed if an output was not acknowledged (handle the batches it carries again). Any other
        error leaves the unrecorded batches in the group, acknowledged: call again later. Each batch's
        marks and offsets go to :attr:`marks`, whose ``completed()`` returns the offsets once the marks
        are durable. ``give_up`` (the worker's stop flag) ends a wait for a store taking no marks.
        Returns the outcomes of the batches settled, oldest first.
        """
        settled: list[BatchOutcome] = []
        for batch in self.acks.flush():
            if batch.outbox_sent:
                self.store.outbox_sent(self.service, batch.outbox_sent)
            if self.ordering is not None:  # one batch per group: its parking changes, before its marks
                self.ordering.finish(self.producer)
            for effect in batch.effects:  # timers: idempotent writes, so a retried settle may repeat them
                effect()
            self.marks.submit(batch.marks, batch.outcome.offsets, give_up=give_up)
            self.acks.settled(batch)
            settled.append(batch.outcome)
        if self.bound.joins and time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + _SWEEP_INTERVAL_S
            retention = getattr(self.store, "retention", DEFAULT_RETENTION)  # a user's store may not say
            expire_closed(self.store, self.service, int((time.time() - retention.total_seconds()) * 1000))
        return settled

    def close(self, timeout_s: float = 30.0) -> list[list[TopicPartition]]:
        """Stop the mark writer once the marks handed to it are durable; returns the offsets that became
        safe to store meanwhile. Settle first (the worker does, counting what settles): batches still
        unsettled here keep their offsets unstored and are redelivered."""
        return self.marks.close(timeout_s)

    def _seen(self, event_ids: list[str]) -> set[str]:
        """Ids already processed: marked in the store, or handled in a batch not settled or not yet marked."""
        seen = self.store.seen(self.service, event_ids)
        in_flight, unsettled = self.marks.in_flight, self.acks.ids
        if in_flight or unsettled:
            seen.update(i for i in event_ids if i in in_flight or i in unsettled)
        return seen

    def _flush_counters(self) -> None:
        for (topic, type_name), count in self.intake.consumed.items():
            metrics.CONSUMED.labels(self.service, topic, type_name).inc(count)
        for event_class, count in self.scope.produced.items():
            binding = self.bound.output_binding(event_class)
            metrics.PRODUCED.labels(self.service, binding.topic, binding.type_name).inc(count)
        for type_name, count in self.scope.duplicates.items():
            metrics.DUPLICATES.labels(self.service, type_name).inc(count)
        for route in self.routes:
            if route.tally:
                metrics.HANDLER_DURATION.merge((self.service, route.type_name), route.tally)
        self._clear_counters()

    def _clear_counters(self) -> None:
        self.intake.consumed.clear()
        self.scope.produced.clear()
        self.scope.duplicates.clear()
        for route in self.routes:
            route.tally.clear()
