"""One batch of records through one service: dedupe, decode, handle, emit, then mark and commit.

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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from confluent_kafka import KafkaError, Message, TopicPartition

from choreo.context import Context
from choreo.envelope import (
    EnvelopeError,
    derived_event_id,
    format_time,
    identify,
    output_headers,
    step_headers,
)
from choreo.errors import DeserializationError, InfrastructureError
from choreo.events import Event, EventBinding
from choreo.idempotency import DuplicateEventError, IdempotencyStore, OutboxRecord
from choreo.kafka.producer import OutgoingRecord, ReliableProducer
from choreo.observability import metrics
from choreo.observability.histogram import Tally
from choreo.retry.headers import RETRY_ATTEMPT, RETRY_NOT_BEFORE, header_int, now_ms
from choreo.runtime.acks import AckGroup, UnackedBatch
from choreo.runtime.failures import FailurePolicy
from choreo.runtime.invoke import build_chain
from choreo.runtime.marks import MarkWriter
from choreo.runtime.ordering import KeyOrdering, entity_key
from choreo.serde.avro import AvroEventSerde
from choreo.service import BoundService, Handler, HandlerSpec

log = logging.getLogger(__name__)


class _Route:
    """Everything the hot path needs about one input event type, looked up once per record."""

    __slots__ = ("binding", "spec", "chain", "tally")

    def __init__(self, binding: EventBinding, spec: HandlerSpec, chain: Handler, tally: Tally) -> None:
        self.binding = binding
        self.spec = spec
        self.chain = chain  # the handler wrapped in the service's middleware
        self.tally = tally  # handler durations, merged into Prometheus once per batch


class _Item(NamedTuple):
    """A consumed record this service handles (a NamedTuple: one is built per record)."""

    message: Message
    event_id: str
    headers: dict[str, bytes]
    route: _Route
    attempt: int


@dataclass(frozen=True)
class Pause:
    """A retry record not yet due: pause its partition and rewind to it until ``due_ms``."""

    topic: str
    partition: int
    offset: int
    due_ms: int


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
                 store: IdempotencyStore, failures: FailurePolicy, loop: asyncio.AbstractEventLoop) -> None:
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
        # Counted locally and added to Prometheus once per batch: labels() per record is costly.
        self._consumed: Counter[tuple[str, str]] = Counter()
        self._produced: Counter[type[Event]] = Counter()
        self._duplicates: Counter[str] = Counter()
        self._batch_time = ""
        self._routes: dict[str, _Route] = {
            type_name: _Route(binding, spec, build_chain(spec, loop, bound.service.middleware),
                              metrics.HANDLER_DURATION.tally())
            for type_name, (binding, spec) in bound.inputs.items()
        }

    # -- the batch -------------------------------------------------------------------------------

    def process(self, messages: Sequence[Message]) -> BatchOutcome:
        """Handle ``messages`` and queue every resulting record; the caller then :meth:`defer`s the batch."""
        outcome = BatchOutcome()
        self._clear_counters()  # a re-run batch counts once: what a failed attempt counted is dropped
        self._batch_time = format_time(datetime.now(UTC))
        items = self._parse(messages, outcome)
        seen = self._seen([item.event_id for item in items]) if items else set()
        self._marks: list[str] = []
        self._outbox_sent: list[str] = []
        # A redelivered transactional event re-sends its unacknowledged outbox at its own place in the
        # batch, so a later event of the same key cannot overtake its outputs. One store call per batch.
        redelivered_tx = [i.event_id for i in items if i.route.spec.transactional and i.event_id in seen]
        pending_outbox = self.store.pending_outbox(self.service, redelivered_tx) if redelivered_tx else {}
        ordering = self.ordering
        if ordering is not None:
            ordering.begin({k for k in (entity_key(item.message) for item in items) if k is not None})
        for item in items:
            event_id = item.event_id
            key = entity_key(item.message) if ordering is not None else None
            if event_id in seen:
                outcome.duplicates += 1
                self._duplicates[item.route.binding.type_name] += 1
                log.debug("duplicate skipped service=%s event_id=%s", self.service, event_id)
                if event_id in pending_outbox:
                    self._resend_outbox(event_id, pending_outbox.pop(event_id))
                if ordering is not None:
                    ordering.done(key, event_id, self.producer)
                continue
            if ordering is not None and ordering.must_park(key, event_id):
                assert key is not None
                ordering.park(key, item.message, event_id)
                outcome.parked += 1
                continue
            seen.add(event_id)  # the same id twice in one batch is a duplicate too
            verdict = self._handle(item)
            if verdict == "handled":
                outcome.handled += 1
            else:
                outcome.failed += 1
            if ordering is not None:
                if verdict == "retry":
                    ordering.retrying(key, event_id)
                else:
                    ordering.done(key, event_id, self.producer)
        return outcome

    def defer(self, outcome: BatchOutcome, messages: Sequence[Message]) -> None:
        """Hand the processed batch to :attr:`acks`; it is recorded when the group is settled."""
        self.acks.add(UnackedBatch(messages, outcome, self._marks, self._outbox_sent))
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
            self.marks.submit(batch.marks, batch.outcome.offsets, give_up=give_up)
            self.acks.settled(batch)
            settled.append(batch.outcome)
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
        for (topic, type_name), count in self._consumed.items():
            metrics.CONSUMED.labels(self.service, topic, type_name).inc(count)
        for event_class, count in self._produced.items():
            binding = self.bound.output_binding(event_class)
            metrics.PRODUCED.labels(self.service, binding.topic, binding.type_name).inc(count)
        for type_name, count in self._duplicates.items():
            metrics.DUPLICATES.labels(self.service, type_name).inc(count)
        for type_name, route in self._routes.items():
            if route.tally:
                metrics.HANDLER_DURATION.merge((self.service, type_name), route.tally)
        self._clear_counters()

    def _clear_counters(self) -> None:
        self._consumed.clear()
        self._produced.clear()
        self._duplicates.clear()
        for route in self._routes.values():
            route.tally.clear()

    # -- steps -----------------------------------------------------------------------------------

    def _parse(self, messages: Sequence[Message], outcome: BatchOutcome) -> list[_Item]:
        """Envelopes of the records this service handles; fills in offsets to store and pauses.

        A retry record that is not due yet pauses its partition: it and everything after it in
        that partition are left for later, and the stored offset stops just before it.
        """
        items: list[_Item] = []
        last: dict[tuple[str, int], int] = {}
        paused: set[tuple[str, int]] = set()
        routes = self._routes
        now = now_ms()
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error service=%s error=%s", self.service, error)
                continue
            position = (message.topic(), message.partition())
            if position in paused:
                continue
            raw_headers = message.headers()
            headers = dict(raw_headers) if raw_headers else {}  # in C; identify() copes with None values
            if RETRY_NOT_BEFORE in headers:
                due = header_int(headers, RETRY_NOT_BEFORE, 0)
                if due > now:
                    paused.add(position)
                    outcome.pauses.append(Pause(*position, message.offset(), due))
                    continue
            last[position] = message.offset()
            try:
                event_id, event_type = identify(headers)
            except EnvelopeError as exc:
                self.failures.on_poison(message, DeserializationError(str(exc), record=message), self.producer)
                continue
            self._consumed[(position[0], event_type)] += 1
            route = routes.get(event_type)
            if route is None:
                continue  # another event type on a shared topic: not ours, nothing to decode
            attempt = header_int(headers, RETRY_ATTEMPT, 1) if RETRY_ATTEMPT in headers else 1
            items.append(_Item(message, event_id, headers, route, attempt))
        outcome.offsets = [TopicPartition(t, p, offset + 1) for (t, p), offset in last.items()]
        return items

    def _handle(self, item: _Item) -> Literal["handled", "retry", "dead-letter"]:
        """Decode, run the handler chain, queue the outputs; else say where the failure policy sent it."""
        message, route = item.message, item.route
        try:
            event = self.serde.decode(route.binding, message.value())
        except DeserializationError as exc:
            exc.record = message
            self.failures.on_poison(message, exc, self.producer)
            return "dead-letter"
        ctx = Context.of_record(self.service, message.topic(), message.partition(), message.offset(),
                                item.event_id, item.headers, item.attempt)
        started = time.perf_counter()
        try:
            if route.spec.transactional:
                self._run_transactional(route.chain, event, ctx)
            else:
                outputs = route.chain(event, ctx)
                if outputs:
                    self.producer.produce_all(self._encode_outputs(outputs, ctx))
                    self._count_produced(outputs)
                self._marks.append(item.event_id)
        except DuplicateEventError:
            # Another member of the group committed this event first (a rebalance race): its
            # transaction rolled back, so nothing of this run is kept or sent.
            self._duplicates[route.binding.type_name] += 1
            return "handled"
        except InfrastructureError:
            raise  # the registry or store is down: not the event's fault; the batch is re-run
        except Exception as exc:  # noqa: BLE001 - any handler error is routed, never crashes the loop
            metrics.HANDLER_ERRORS.labels(self.service, route.binding.type_name, type(exc).__name__).inc()
            return self.failures.on_handler_error(message, ctx.envelope, exc, self.producer)
        finally:
            route.tally.observe(time.perf_counter() - started)
        return "handled"

    def _run_transactional(self, chain: Handler, event: Event, ctx: Context) -> None:
        with self.store.transaction(self.service) as tx:
            ctx.tx = tx
            outputs = chain(event, ctx)
            event_ids: list[str] = []
            records = self._encode_outputs(outputs, ctx, event_ids)
            tx.record(ctx.event_id, [
                OutboxRecord(topic=r.topic, key=r.key, value=r.value, headers=r.headers, event_id=event_id)
                for r, event_id in zip(records, event_ids, strict=True)
            ])
        self.producer.produce_all(records)
        self._count_produced(outputs)
        self._outbox_sent.append(ctx.event_id)

    def _encode_outputs(self, outputs: list[Event], ctx: Context,
                        event_ids: list[str] | None = None) -> list[OutgoingRecord]:
        """Envelope and encode every emitted event (all before any is produced: all or nothing).

        Appends each record's ``ce_id`` to ``event_ids`` if given (the outbox keeps them).
        """
        records: list[OutgoingRecord] = []
        if not outputs:
            return records
        cause_id = ctx.event_id
        shared = step_headers(ctx.headers, cause_id, source=self.service, request_id=ctx.request_id,
                              time=self._batch_time)
        output_binding, encode = self.bound.output_binding, self.serde.encode
        for position, output in enumerate(outputs):
            binding = output_binding(type(output))
            key = output.entity_key()
            event_id = derived_event_id(cause_id, position, binding.type_name)
            value = encode(binding, output)
            records.append(OutgoingRecord(binding.topic, key.encode(), value,
                                          output_headers(shared, event_id, binding.type_bytes, key)))
            if event_ids is not None:
                event_ids.append(event_id)
        return records

    def _count_produced(self, outputs: list[Event]) -> None:
        """Count queued outputs per event class (labelled by their binding once per batch)."""
        produced = self._produced
        for output in outputs:  # not Counter.update: its Mapping check costs more than the loop
            produced[type(output)] += 1

    def _resend_outbox(self, event_id: str, records: list[OutboxRecord]) -> None:
        for record in records:
            self.producer.produce(OutgoingRecord(record.topic, record.key, record.value, list(record.headers)))
        self._outbox_sent.append(event_id)
        log.info("re-sent %d outbox records service=%s event_id=%s", len(records), self.service, event_id)

