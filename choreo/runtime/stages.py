"""The stages of the per-record path (see :mod:`choreo.runtime.pipeline`), one concern each.

``dedupe``     skips ids already processed (one store call per batch) and re-sends a redelivered
               transactional event's unacknowledged outbox at its own place in the batch;
``key-order``  (ordered retries only) parks later events of a key waiting in a retry topic, and
               releases the next one when the blocker ends, whichever way (see runtime/ordering.py);
``decode``     Avro → the typed event; what cannot be decoded is poison (dead-lettered at once);
``tasks``      (on by default) reports on ``choreo.tasks`` what a step's outputs cannot tell: a step that
               emitted nothing, a retry, a dead letter (choreo/tasks.py);
``handle``     runs the handler chain (in a store transaction for transactional routes: state, mark,
               outbox and timers commit together), encodes and produces its outputs, and routes a
               handler error to a retry topic or the DLQ.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from choreo.context import Context
from choreo.emits import UndeclaredEmission
from choreo.envelope import CORRELATION_ID, derived_event_id, output_headers, step_headers, step_request_id
from choreo.errors import DeserializationError, InfrastructureError
from choreo.events import Event
from choreo.idempotency import DuplicateEventError, IdempotencyStore, OutboxRecord
from choreo.kafka.producer import OutgoingRecord, ReliableProducer
from choreo.observability import metrics
from choreo.retry.headers import now_ms
from choreo.runtime.failures import FailurePolicy
from choreo.runtime.ordering import KeyOrdering
from choreo.runtime.pipeline import Rec, Stage, Status
from choreo.serde.avro import AvroEventSerde
from choreo.service import BoundService
from choreo.tasks import TASKS_TOPIC, encode_task

log = logging.getLogger(__name__)


class BatchScope:
    """What the stages of one batch share; :meth:`reset` at the start of every batch (a re-run too)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.produced: Counter[type[Event]] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.timers: Any = None  # the worker's TimerBook: ctx.schedule / ctx.cancel go through it
        self.settings: Any = None  # the worker's Settings, handed to every handler as ctx.settings
        self.reset("")

    def reset(self, batch_time: str) -> None:
        self.time = batch_time  # one ce_time per batch
        self.started_ms = now_ms()  # when the batch's steps started (task records)
        self.marks: list[str] = []  # ids to mark processed once the batch is acknowledged
        self.outbox_sent: list[str] = []  # transactional inputs whose outbox was produced


class Dedupe(Stage):
    """Skip ids already processed: marked in the store, or handled in a batch not yet settled or marked."""

    name = "dedupe"

    def __init__(self, scope: BatchScope, store: IdempotencyStore, producer: ReliableProducer,
                 seen: Callable[[list[str]], set[str]]) -> None:
        self.scope, self.store, self.producer, self._seen_query = scope, store, producer, seen
        self.seen: set[str] = set()
        self.pending_outbox: dict[str, list[OutboxRecord]] = {}

    def begin(self, recs: Sequence[Rec]) -> None:
        self.seen = self._seen_query([rec.event_id for rec in recs]) if recs else set()
        # A redelivered transactional event re-sends its unacknowledged outbox at its own place in the
        # batch, so a later event of the same key cannot overtake its outputs. One store call per batch.
        redelivered = [r.event_id for r in recs if r.route.transactional and r.event_id in self.seen]
        self.pending_outbox = self.store.pending_outbox(self.scope.service, redelivered) if redelivered else {}

    def enter(self, rec: Rec) -> bool:
        event_id = rec.event_id
        if event_id not in self.seen:
            self.seen.add(event_id)  # the same id twice in one batch is a duplicate too
            return True
        rec.status = Status.DUPLICATE
        self.scope.duplicates[rec.route.type_name] += 1
        log.debug("duplicate skipped service=%s event_id=%s", self.scope.service, event_id)
        records = self.pending_outbox.pop(event_id, None)
        if records is not None:
            for record in records:
                self.producer.produce(OutgoingRecord(record.topic, record.key, record.value, list(record.headers)))
            self.scope.outbox_sent.append(event_id)
            log.info("re-sent %d outbox records service=%s event_id=%s", len(records), self.scope.service, event_id)
        return False


class KeyOrder(Stage):
    """Ordered retries: a key waiting in a retry topic holds its later events back (runtime/ordering.py)."""

    name = "key-order"

    def __init__(self, ordering: KeyOrdering, producer: ReliableProducer) -> None:
        self.ordering, self.producer = ordering, producer

    def begin(self, recs: Sequence[Rec]) -> None:
        self.ordering.begin({k for k in (rec.key for rec in recs) if k is not None})

    def enter(self, rec: Rec) -> bool:
        key = rec.key
        if key is not None and not rec.is_timer and self.ordering.must_park(key, rec.event_id):
            self.ordering.park(key, rec.message, rec.event_id)
            rec.status = Status.PARKED
            return False
        return True

    def leave(self, rec: Rec) -> None:
        status = rec.status
        if status == Status.PARKED or rec.is_timer:
            return  # parked: waits its turn; a fired timer never blocks or releases a key
        if status == Status.RETRY:
            self.ordering.retrying(rec.key, rec.event_id)
        else:  # handled, duplicate or dead-lettered: the key moves on
            self.ordering.done(rec.key, rec.event_id, self.producer)


class Decode(Stage):
    """The record's value, decoded into its event class; undecodable bytes are poison."""

    name = "decode"

    def __init__(self, serde: AvroEventSerde, failures: FailurePolicy, producer: ReliableProducer) -> None:
        self.serde, self.failures, self.producer = serde, failures, producer

    def enter(self, rec: Rec) -> bool:
        try:
            rec.event = self.serde.decode(rec.route.binding, rec.message.value())
        except DeserializationError as exc:
            exc.record = rec.message
            self.failures.on_poison(rec.message, exc, self.producer)
            rec.status = Status.DEAD
            return False
        return True


class Handle(Stage):
    """Run the route's handler chain, emit its outputs, or route its failure (retry topic or DLQ)."""

    name = "handle"

    def __init__(self, scope: BatchScope, bound: BoundService, serde: AvroEventSerde, producer: ReliableProducer,
                 store: IdempotencyStore, failures: FailurePolicy) -> None:
        self.scope, self.bound, self.serde, self.producer = scope, bound, serde, producer
        self.store, self.failures = store, failures
        self.service = bound.name

    def enter(self, rec: Rec) -> bool:
        message, route, scope = rec.message, rec.route, self.scope
        ctx = Context.of_record(self.service, message.topic(), message.partition(), message.offset(),
                                rec.event_id, rec.headers, rec.attempt)
        ctx.timers, ctx.settings = scope.timers, scope.settings
        started = time.perf_counter()
        try:
            if route.transactional:
                rec.emitted = self._run_transactional(route, rec.event, ctx)
            else:
                outputs = route.chain(rec.event, ctx)
                if outputs:
                    _check_declared(outputs, route)
                    self.producer.produce_all(self.encode_outputs(outputs, ctx))
                    self._count_produced(outputs)
                    rec.emitted = len(outputs)
                scope.marks.append(rec.event_id)
            rec.status = Status.HANDLED
        except DuplicateEventError:
            # Another member of the group committed this event first (a rebalance race): its
            # transaction rolled back, so nothing of this run is kept or sent.
            scope.duplicates[route.type_name] += 1
            rec.status = Status.HANDLED
        except InfrastructureError:
            raise  # the registry or store is down: not the event's fault; the batch is re-run
        except Exception as exc:  # noqa: BLE001 - any handler error is routed, never crashes the loop
            metrics.HANDLER_ERRORS.labels(self.service, route.type_name, type(exc).__name__).inc()
            verdict = self.failures.on_handler_error(message, ctx.envelope, exc, self.producer)
            rec.status = Status.RETRY if verdict == "retry" else Status.DEAD
        finally:
            route.tally.observe(time.perf_counter() - started)
            rec.request_id = ctx._request_id  # derived if outputs were stamped with it: reuse it
        return True

    def _run_transactional(self, route: Any, event: Event, ctx: Context) -> int:
        chain = route.chain
        with self.store.transaction(self.service) as tx:
            ctx.tx = tx
            outputs = chain(event, ctx)
            _check_declared(outputs, route)  # refused inside the transaction: nothing of it is kept
            event_ids: list[str] = []
            records = self.encode_outputs(outputs, ctx, event_ids)
            tx.record(ctx.event_id, [
                OutboxRecord(topic=r.topic, key=r.key, value=r.value, headers=r.headers, event_id=event_id)
                for r, event_id in zip(records, event_ids, strict=True)
            ])
        self.producer.produce_all(records)
        self._count_produced(outputs)
        self.scope.outbox_sent.append(ctx.event_id)
        return len(records)

    def encode_outputs(self, outputs: list[Event], ctx: Context,
                       event_ids: list[str] | None = None) -> list[OutgoingRecord]:
        """Envelope and encode every emitted event (all before any is produced: all or nothing).

        Appends each record's ``ce_id`` to ``event_ids`` if given (the outbox keeps them).
        """
        records: list[OutgoingRecord] = []
        if not outputs:
            return records
        cause_id = ctx.event_id
        shared = step_headers(ctx.headers, cause_id, source=self.service, request_id=ctx.request_id,
                              time=self.scope.time)
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
        produced = self.scope.produced
        for output in outputs:  # not Counter.update: its Mapping check costs more than the loop
            produced[type(output)] += 1


def _check_declared(outputs: list[Event], route: Any) -> None:
    """UndeclaredEmission (a permanent error: dead-lettered) for an output type the handler does not declare."""
    declared = route.emits
    for output in outputs:
        if type(output) not in declared:
            raise UndeclaredEmission(route.handler, type(output), declared)


class TaskReport(Stage):
    """A task record on ``choreo.tasks`` for every step outcome its outputs do not already tell.

    A step that emitted events is reported by them: each carries the step's ``request-id`` (its task
    id), ``ce_source`` (the service) and ``causation-id`` (its input), on its topic, acknowledged in the
    same flush — a second record per step would cost ~20% of throughput (measured). A record is sent for
    a step that emitted nothing, for a retry and for a dead letter. Produced with the batch's outputs,
    so it shares their flush (no extra round trip) and their re-run guarantee; parked records ran no
    step and report nothing.
    Placed first in the list, its ``leave`` runs last, once every other stage has set the status.
    """

    name = "tasks"
    # A duplicate was handled before (only handled ids are marked): it reports ``completed`` again. A
    # transactional step commits its mark before its task record is acknowledged, so after a crash in
    # between, the redelivery is the only chance to report it; observers take repeated records as one.
    _STATUS = {Status.HANDLED: "completed", Status.DUPLICATE: "completed", Status.RETRY: "retrying",
               Status.DEAD: "dead-lettered"}

    def __init__(self, scope: BatchScope, producer: ReliableProducer) -> None:
        self.scope, self.producer, self.service = scope, producer, scope.service

    def leave(self, rec: Rec) -> None:
        status = self._STATUS.get(rec.status)
        if status is None or (rec.emitted and rec.status == Status.HANDLED):
            return  # parked; or handled with outputs, which report the step themselves
        event_id = rec.event_id
        job_bytes = rec.headers.get(CORRELATION_ID) or event_id.encode()
        task = rec.request_id or step_request_id(event_id, self.service)
        # A duplicate may be a copy of any earlier attempt (retries share the ce_id): its attempt says
        # nothing about the one that completed, so it is sent as 0, "not stated".
        attempt = 0 if rec.status == Status.DUPLICATE else rec.attempt
        value = encode_task(job_bytes.decode(errors="replace"), task,
                            self.service, status, attempt, event_id, rec.route.type_name,
                            self.scope.started_ms, now_ms())
        self.producer.produce(OutgoingRecord(TASKS_TOPIC, job_bytes, value, []))


def build_stages(*, scope: BatchScope, bound: BoundService, serde: AvroEventSerde, producer: ReliableProducer,
                 store: IdempotencyStore, failures: FailurePolicy, ordering: KeyOrdering | None,
                 seen: Callable[[list[str]], set[str]], task_records: bool = True) -> list[Stage]:
    """The one list: what runs, in which order, for this service (absent features are left out)."""
    stages: list[Stage | None] = [
        TaskReport(scope, producer) if task_records else None,  # leave() last: the step's final status
        Dedupe(scope, store, producer, seen),  # a duplicate never parks or decodes
        KeyOrder(ordering, producer) if ordering is not None else None,  # its leave() sees duplicates too
        Decode(serde, failures, producer),
        Handle(scope, bound, serde, producer, store, failures),
    ]
    return [stage for stage in stages if stage is not None]
