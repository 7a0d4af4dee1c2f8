"""Durable timers: ``ctx.schedule(event, at=...)`` / ``ctx.cancel(name)``, fired on the wall clock.

A timer is a row of ``choreo_timers`` in the service's store, identified by (service, key, name):
scheduling the same name for the same key again replaces it. It holds the record to deliver when it
is due — the scheduled event, Avro-encoded at scheduling time, with an envelope whose ``ce_id`` is
derived from the scheduling event and the name (so a handler re-run schedules the same id) and a
``choreo-timer`` header naming the timer.

Writing: a transactional handler's ``ctx.schedule`` writes in its transaction (state, mark, outbox and
timer commit together); a plain handler's is applied when its batch is settled, before its marks.

Firing (:class:`TimerSource`): a timer belongs to the partition *index* of the record that scheduled
it (domain and retry topics are co-partitioned and the range assignor gives index i of every topic
to one member), so only the member owning that index fires it, and a rebalance moves timers with
their keys. Between batches the worker asks :meth:`TimerSource.due`; due timers become records with
no offset that run through the same stages as consumed ones (dedupe by their ``ce_id``, the service's
``@on_timer`` handler or plain emission, failure routing). A fired timer's row is deleted once its
batch is settled; until then it is not fired again. A crash in between re-fires it with the same id,
which dedupe (or downstream consumers) drop: emitted once. The store is asked only when the earliest
known due time has come (known from the last query and from timers this process scheduled), and at
least every ``poll_s``; so timers fire at most ~``poll_s`` late (default 0.1 s) plus a batch.
Changing a topic's partition count remaps keys and strands timers: unsupported, as in Kafka Streams.
Threads: the consumer thread only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from confluent_kafka import Message

from choreo.envelope import Envelope, derived_event_id, format_time
from choreo.idempotency import IdempotencyStore
from choreo.idempotency.base import decode_headers, encode_headers
from choreo.observability import metrics
from choreo.retry.headers import now_ms
from choreo.runtime.intake import TIMER_HEADER
from choreo.state import execute, fetchall, fetchone

log = logging.getLogger(__name__)

Effect = Callable[[], None]


def timer_event_id(cause_event_id: str, name: str) -> str:
    """``ce_id`` of the record a timer delivers: the same for every re-run of the scheduling handler."""
    return derived_event_id(cause_event_id, 0, f"timer:{name}")


def timer_topic(service: str) -> str:
    """The topic name fired timer records carry (no such topic exists: they never pass a broker)."""
    return f"{service}.timers"


class TimerBook:
    """``ctx.schedule`` / ``ctx.cancel`` of one worker: writes in the handler's transaction, or defers."""

    def __init__(self, service: str, store: IdempotencyStore, encode: Callable[[Any], tuple[str, bytes]],
                 on_scheduled: Callable[[int], None]) -> None:
        self.service = service
        self.store = store
        self._encode = encode  # event → (ce_type, Avro bytes)
        self._on_scheduled = on_scheduled  # due_ms → the TimerSource learns of an earlier due time
        self.deferred: list[Effect] = []  # this batch's writes of plain handlers; taken at defer()

    def schedule(self, ctx: Any, event: Any, at: datetime, name: str) -> str:
        type_name, value = self._encode(event)
        self.schedule_record(ctx, event.entity_key(), name, at, type_name, value)
        return name

    def schedule_record(self, ctx: Any, key: str, name: str, at: datetime, type_name: str, value: bytes) -> None:
        """Schedule an already-encoded event of ``type_name`` (joins reuse a part as their timeout's record)."""
        event_id = timer_event_id(ctx.event_id, name)
        cause = ctx.envelope
        envelope = Envelope(event_id=event_id, event_type=type_name, source=self.service, subject=key,
                            time=format_time(at), correlation_id=cause.correlation_id, request_id=ctx.request_id,
                            causation_id=ctx.event_id, traceparent=cause.traceparent, tracestate=cause.tracestate)
        headers = [*envelope.to_headers(), (TIMER_HEADER, name.encode())]
        due_ms = int(at.timestamp() * 1000)
        row = (self.service, key, name, ctx.partition, due_ms, event_id, value, encode_headers(headers),
               now_ms())
        self._write(ctx, lambda tx: _upsert(tx, row))
        self._on_scheduled(due_ms)

    def cancel(self, ctx: Any, key: str, name: str) -> None:
        self._write(ctx, lambda tx: execute(
            tx, "DELETE FROM choreo_timers WHERE service = ? AND key = ? AND name = ?", (self.service, key, name)))

    def take_deferred(self) -> list[Effect]:
        deferred, self.deferred = self.deferred, []
        return deferred

    def _write(self, ctx: Any, write: Callable[[Any], object]) -> None:
        if ctx.tx is not None:
            write(ctx.tx)
            return

        def apply() -> None:
            with self.store.transaction(self.service) as tx:
                write(tx)
        self.deferred.append(apply)


def _upsert(tx: Any, row: tuple[Any, ...]) -> None:
    execute(tx, "INSERT INTO choreo_timers (service, key, name, partition_no, due_ms, event_id, value, headers,"
                " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (service, key, name) DO UPDATE SET"
                " partition_no = excluded.partition_no, due_ms = excluded.due_ms, event_id = excluded.event_id,"
                " value = excluded.value, headers = excluded.headers, created_ms = excluded.created_ms", row)


class TimerSource:
    """Fires the due timers of the partitions this member owns (see the module docstring)."""

    def __init__(self, service: str, store: IdempotencyStore, *, poll_s: float = 0.1, limit: int = 500) -> None:
        self.service = service
        self.store = store
        self.poll_s = poll_s
        self.limit = limit
        self.partitions: set[int] = set()
        self.firing: set[str] = set()  # fired, not yet settled: never fired twice meanwhile
        self._next_due_ms: int | None = None
        self._next_poll = 0.0

    def assigned(self, partitions: Iterable[int]) -> None:
        self.partitions = set(partitions)
        self._next_poll = 0.0  # ask the store at once: the new partitions may hold due timers

    def revoked(self) -> None:
        """Every partition went (the eager range assignor revokes all): stop firing at once."""
        self.partitions = set()
        self.firing.clear()
        self._next_due_ms = None

    def scheduled(self, due_ms: int) -> None:
        if self._next_due_ms is None or due_ms < self._next_due_ms:
            self._next_due_ms = due_ms

    def due(self, now_ms: int) -> list[Message]:
        """Records of the timers due by ``now_ms`` (oldest first), at most ``limit``; [] without a store call
        unless the earliest known due time has come or ``poll_s`` has passed."""
        if not self.partitions:
            return []
        monotonic = time.monotonic()
        known_due = self._next_due_ms is not None and self._next_due_ms <= now_ms
        if not known_due and monotonic < self._next_poll:
            return []
        self._next_poll = monotonic + self.poll_s
        rows, next_due = self._query(now_ms)
        self._next_due_ms = next_due
        messages = [self._message(*row) for row in rows]
        self.firing.update(row[3] for row in rows)
        if messages:
            metrics.TIMERS_FIRED.labels(self.service).inc(len(messages))
        return messages

    def fired_effect(self, event_ids: list[str]) -> Effect:
        """What the settle of a batch that fired ``event_ids`` does: delete those rows, forget them."""
        def delete() -> None:
            with self.store.transaction(self.service) as tx:
                for event_id in event_ids:
                    execute(tx, "DELETE FROM choreo_timers WHERE service = ? AND event_id = ?",
                            (self.service, event_id))
            self.firing.difference_update(event_ids)
        return delete

    def _query(self, now_ms: int) -> tuple[list[tuple[Any, ...]], int | None]:
        marks = ",".join("?" * len(self.partitions))
        where = f"service = ? AND partition_no IN ({marks})"
        params: list[Any] = [self.service, *sorted(self.partitions)]
        reader = getattr(self.store, "read", self.store.transaction)  # a lock-free read where the store has one
        with reader(self.service) as tx:
            rows = fetchall(tx, f"SELECT key, partition_no, due_ms, event_id, value, headers FROM choreo_timers"
                                f" WHERE {where} AND due_ms <= ? ORDER BY due_ms LIMIT ?",
                            (*params, now_ms, self.limit + len(self.firing)))
            rows = [row for row in rows if row[3] not in self.firing][: self.limit]
            later = fetchone(tx, f"SELECT MIN(due_ms) FROM choreo_timers WHERE {where} AND due_ms > ?",
                             (*params, now_ms))
        next_due = later[0] if later and later[0] is not None else None
        if rows and len(rows) == self.limit:
            next_due = now_ms  # more are due than one batch takes: come back at once
        return rows, next_due

    def _message(self, key: str, partition: int, due_ms: int, event_id: str, value: bytes, headers: str) -> Message:
        late_ms = now_ms() - due_ms
        log.debug("timer fired service=%s key=%s event_id=%s late_ms=%d", self.service, key, event_id, late_ms)
        # offset -1 is librdkafka's "no offset": Message.offset() answers None, which intake reads as a timer.
        return Message(topic=timer_topic(self.service), partition=partition, offset=-1, key=key.encode(),
                       value=bytes(value), headers=decode_headers(headers), timestamp=(1, due_ms))


TIMER_TABLES = {
    dialect: [
        f"""CREATE TABLE IF NOT EXISTS choreo_timers (
            service TEXT NOT NULL, key TEXT NOT NULL, name TEXT NOT NULL, partition_no INTEGER NOT NULL,
            due_ms BIGINT NOT NULL, event_id TEXT NOT NULL, value {blob} NOT NULL, headers TEXT NOT NULL,
            created_ms BIGINT NOT NULL, PRIMARY KEY (service, key, name))""",
        "CREATE INDEX IF NOT EXISTS choreo_timers_due ON choreo_timers (service, partition_no, due_ms)",
        "CREATE INDEX IF NOT EXISTS choreo_timers_event ON choreo_timers (service, event_id)",
    ]
    for dialect, blob in (("sqlite", "BLOB"), ("postgresql", "BYTEA"))
}
