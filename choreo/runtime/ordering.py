"""Ordered retries per key (opt-in: ``Service(..., ordered_retries=True)``).

While an event of key K waits in a retry topic, K is *blocked* by it: later events of K are parked in
the service store, in arrival order, instead of overtaking it. When the blocker is handled (or
dead-lettered), the oldest parked event is released — re-produced to ``<service>.retry.1``, due at once —
and becomes K's blocker in turn; when nothing is parked, K is unblocked. Releasing one at a time keeps
order even when a released event fails again. Other keys are never held back.

State (blockers, parked records) lives in the store, so it survives restarts and rebalances. Changes are
collected during a batch (visible at once to later records of the same batch) and written in one
transaction by :meth:`KeyOrdering.finish`, after the batch's records are acknowledged and before its
offsets are stored. Thread-safety: one instance per BatchProcessor.
"""

from __future__ import annotations

import logging

from confluent_kafka import Message

from choreo.idempotency import IdempotencyStore, OutboxRecord
from choreo.kafka.producer import OutgoingRecord, ReliableProducer
from choreo.retry import headers as h

log = logging.getLogger(__name__)


def entity_key(message: Message) -> str | None:
    key = message.key()
    return key.decode(errors="replace") if key is not None else None


class KeyOrdering:
    """Per-batch view of blocked keys and parked events for one service."""

    def __init__(self, service: str, store: IdempotencyStore) -> None:
        self.service = service
        self.store = store
        self.release_topic = h.retry_topic(service, 1)
        self._blockers: dict[str, str | None] = {}
        self._changes: dict[str, str | None] = {}
        self._pending: list[tuple[str, OutboxRecord]] = []
        self._released: list[str] = []
        self._keys: set[str] = set()

    def begin(self, keys: set[str]) -> None:
        """Load the blockers of the batch's keys (one store call) and reset the batch's changes."""
        self._keys = keys
        self._blockers = dict(self.store.blockers(self.service, keys)) if keys else {}
        self._changes, self._pending, self._released = {}, [], []

    def must_park(self, key: str | None, event_id: str) -> bool:
        """True if ``key`` is blocked by another event: this one has to wait behind it."""
        if key is None:
            return False
        blocker = self._blockers.get(key)
        return blocker is not None and blocker != event_id

    def park(self, key: str, message: Message, event_id: str) -> None:
        """Keep ``message`` as it is, to be released after the events parked before it."""
        headers = [(k, v) for k, v in (message.headers() or []) if v is not None]
        self._pending.append((key, OutboxRecord(topic=message.topic(), key=message.key(),
                                                value=message.value() or b"", headers=headers,
                                                event_id=event_id)))

    def retrying(self, key: str | None, event_id: str) -> None:
        """The event went to a retry topic: it blocks its key until it is done."""
        if key is not None:
            self._set(key, event_id)

    def done(self, key: str | None, event_id: str, producer: ReliableProducer) -> None:
        """The event was handled, skipped or dead-lettered: if it blocked its key, release the next one."""
        if key is not None and self._blockers.get(key) == event_id:
            self._release_next(key, producer)

    def _release_next(self, key: str, producer: ReliableProducer) -> None:
        released = set(self._released)
        waiting = [r for r in self.store.parked(self.service, key) if r.event_id not in released]
        waiting += [r for k, r in self._pending if k == key and r.event_id not in released]
        if not waiting:
            self._set(key, None)
            return
        record = waiting[0]
        headers = [(k, v) for k, v in record.headers if k not in (h.RETRY_ATTEMPT, h.RETRY_NOT_BEFORE)]
        producer.produce(OutgoingRecord(self.release_topic, record.key, record.value,
                                        headers + [(h.RETRY_NOT_BEFORE, str(h.now_ms()).encode())]))
        self._released.append(record.event_id)
        self._set(key, record.event_id)

    def _set(self, key: str, blocker: str | None) -> None:
        self._blockers[key] = blocker
        self._changes[key] = blocker

    def finish(self, producer: ReliableProducer) -> None:
        """Write the batch's parking changes in one transaction (call after the batch is acknowledged).

        Then release any key of the batch left with parked records and no blocker. Only two members
        changing one key at once leave one (e.g. one parks behind a blocker the other just finished):
        its oldest record is re-produced and acknowledged before the store forgets it, as always.
        """
        touched = self._keys | set(self._changes) | {key for key, _ in self._pending}
        self._write()
        stranded = self.store.stranded(self.service, touched) if touched else []
        if stranded:
            self._blockers = {}
            for key in stranded:
                log.warning("releasing a stranded parked record service=%s key=%s", self.service, key)
                self._release_next(key, producer)
            producer.flush()
            self._write()

    def _write(self) -> None:
        if self._changes or self._pending or self._released:
            self.store.apply_parking(self.service, blocks=self._changes, parked=self._pending,
                                     released=self._released)
        self._changes, self._pending, self._released = {}, [], []
