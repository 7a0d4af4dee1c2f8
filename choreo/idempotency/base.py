"""The idempotency store's contract: an inbox of processed event ids and an outbox of their outputs.

A service (one consumer group) skips an event whose ``ce_id`` it already processed. Per batch the
runtime asks ``seen`` (one query), then either calls ``mark_processed`` once the outputs were acknowledged,
or — for transactional handlers — opens ``transaction(service)`` so the handler's own state change, the
processed mark and the outputs (the outbox) commit together. After that commit the runtime produces the
outputs and calls ``outbox_sent``; on a redelivery of a seen event it re-produces ``pending_outbox``
(downstream consumers drop duplicates by their deterministic ids).

Ordered retries per key: while an event of key K waits in a retry topic, K is *blocked* by that event
(``blockers``) and later events of K are *parked* in the store in arrival order (``parked``) instead of
overtaking it; ``apply_parking`` changes both in one transaction. This is live state: ``expire`` leaves it.

Thread-safety: a store instance belongs to one consumer thread at a time; create one per consumer thread.
Handing a store over (open in main, use in the consumer, close on shutdown) is fine; using it from two
threads at once is not.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from choreo.errors import ChoreoError

Dialect = Literal["sqlite", "postgresql"]

DEFAULT_RETENTION = timedelta(days=7)  # Kafka's default log retention: older events cannot be redelivered
DEFAULT_EXPIRE_INTERVAL = 60.0  # seconds between two deletes run by maybe_expire()


class DuplicateEventError(ChoreoError):
    """``StoreTransaction.record`` found the event already processed (another consumer won the race).

    The transaction is rolled back when this leaves the ``with`` block, undoing the handler's state change:
    the runtime treats the event as a duplicate and skips it.
    """

    def __init__(self, service: str, event_id: str) -> None:
        super().__init__(f"event {event_id!r} was already processed by service {service!r}")
        self.service = service
        self.event_id = event_id


@dataclass(frozen=True)
class OutboxRecord:
    """One output event, serialized, exactly as it goes to the producer."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes | None]]  # a list, as confluent-kafka's produce() wants
    event_id: str


class StoreTransaction(Protocol):
    """An open database transaction shared by the handler and the store.

    ``connection`` is a ``sqlite3.Connection`` or ``psycopg.Connection`` inside the transaction; the handler
    writes its state through it (never commits or rolls back itself). ``dialect`` tells user SQL which
    parameter style to use (``?`` for sqlite, ``%s`` for postgresql).
    """

    connection: Any
    dialect: Dialect
    service: str

    def record(self, event_id: str, outputs: Sequence[OutboxRecord] = ()) -> None:
        """Mark ``event_id`` processed and put ``outputs`` in the outbox, in this transaction.

        Raises ``DuplicateEventError`` when the event is already marked.
        """
        ...


@dataclass(frozen=True)
class ReadView:
    """What ``IdempotencyStore.read`` yields: a connection for queries (``choreo.state`` helpers take it)."""

    connection: Any
    dialect: Dialect
    service: str


@runtime_checkable
class IdempotencyStore(Protocol):
    """Processed-event marks and the outbox of one or more services. See the module docstring."""

    dialect: Dialect
    service: str

    def seen(self, service: str, event_ids: Iterable[str]) -> set[str]:
        """The subset of ``event_ids`` already processed by ``service`` (one query per batch)."""
        ...

    def mark_processed(self, service: str, event_ids: Iterable[str]) -> None:
        """Mark ``event_ids`` processed in one batched write; ids already marked are left alone."""
        ...

    def transaction(self, service: str) -> AbstractContextManager[StoreTransaction]:
        """Commit on a clean exit, roll back (recording nothing) on an exception."""
        ...

    def read(self, service: str) -> AbstractContextManager[ReadView]:
        """Queries only, taking no write lock (SQLite: autocommit reads in WAL mode, so neither the mark
        writer nor another process waits). Optional for a user's store: callers fall back to transaction()."""
        ...

    def pending_outbox(self, service: str, event_ids: Iterable[str]) -> dict[str, list[OutboxRecord]]:
        """Unsent outputs per *input* event id, in recorded order; ids without any are left out."""
        ...

    def outbox_sent(self, service: str, event_ids: Iterable[str]) -> None:
        """Drop acknowledged outbox rows: ids are input event ids (all their outputs) or output ids."""
        ...

    def expire(self, service: str, older_than: datetime) -> int:
        """Delete marks (and outbox rows) recorded before ``older_than``; returns the marks deleted."""
        ...

    def maybe_expire(self, service: str | None = None) -> int:
        """``expire(service, now - retention)`` at most once per interval; cheap to call every batch."""
        ...

    def blockers(self, service: str, keys: Iterable[str]) -> dict[str, str]:
        """Key → the event id currently blocking it, for the keys that are blocked (one query per batch)."""
        ...

    def stranded(self, service: str, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` with parked records but no blocker: nothing would ever release them.

        Two members changing one key at once (topics not co-partitioned, a rebalance race) can leave
        a key like that; the runtime releases its oldest record (see ``KeyOrdering.finish``).
        """
        ...

    def parked(self, service: str, key: str) -> list[OutboxRecord]:
        """The records parked behind ``key``, oldest first (arrival order).

        ``OutboxRecord.event_id`` is the parked event's id; topic, key, value and headers are the original
        record's (``OutboxRecord.key`` is the raw Kafka key, ``key`` here its decoded entity id).
        """
        ...

    def apply_parking(
        self,
        service: str,
        *,
        blocks: Mapping[str, str | None],
        parked: Sequence[tuple[str, OutboxRecord]],
        released: Sequence[str],
    ) -> None:
        """One transaction (joining an open ``transaction()``), in this order.

        1. insert ``parked`` (entity key, record) pairs in the given order, ignoring a record whose event id
           is already parked for ``service`` (a redelivery after a crash must not park twice);
        2. delete the parked records whose event ids are in ``released``;
        3. per key of ``blocks``: a str upserts that event id as the key's blocker, ``None`` unblocks it.

        Empty arguments are no-ops.
        """
        ...

    def reopen(self) -> IdempotencyStore:
        """An independent connection to the same store, with the same settings, for another thread.

        ConfigError when the store cannot be shared (an in-memory SQLite database). Optional for a
        user's own store: without it (or on ConfigError) the runtime writes marks on the consumer
        thread instead of a writer thread (:class:`choreo.runtime.marks.MarkWriter`).
        """
        ...

    def close(self) -> None: ...


# -- helpers shared by the implementations ----------------------------------------------------------------


def unique(event_ids: Iterable[str]) -> list[str]:
    """Ids without duplicates, first occurrence order kept."""
    return list(dict.fromkeys(event_ids))


def chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def split_blocks(blocks: Mapping[str, str | None]) -> tuple[list[tuple[str, str]], list[str]]:
    """``apply_parking``'s ``blocks`` as (key, blocker) pairs to upsert and keys to unblock."""
    upserts = [(key, blocker) for key, blocker in blocks.items() if blocker is not None]
    unblocks = [key for key, blocker in blocks.items() if blocker is None]
    return upserts, unblocks


def encode_headers(headers: Sequence[tuple[str, bytes | None]]) -> str:
    """Headers as JSON text, values base64 (``null`` kept): portable across both databases."""
    return json.dumps([[name, None if value is None else _b64(value)] for name, value in headers])


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def decode_headers(text: str) -> list[tuple[str, bytes | None]]:
    return [(name, None if value is None else base64.b64decode(value)) for name, value in json.loads(text)]


def utc_now() -> datetime:
    return datetime.now(UTC)


def require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"older_than must be timezone-aware (got naive {moment.isoformat()})")
    return moment


class ExpiryMixin:
    """``maybe_expire`` and the context-manager protocol on top of ``expire`` and ``close``."""

    service: str
    retention: timedelta
    expire_interval: float
    _clock: Callable[[], datetime]
    _last_expire: dict[str, float]

    def _init_expiry(
        self, service: str, retention: timedelta, expire_interval: float, clock: Callable[[], datetime]
    ) -> None:
        if retention <= timedelta(0):
            raise ValueError(f"retention must be positive, got {retention}")
        self.service = service
        self.retention = retention
        self.expire_interval = expire_interval
        self._clock = clock
        self._last_expire = {}

    def expire(self, service: str, older_than: datetime) -> int:  # pragma: no cover - implemented by stores
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - implemented by stores
        raise NotImplementedError

    def maybe_expire(self, service: str | None = None) -> int:
        service = service or self.service
        now = time.monotonic()
        last = self._last_expire.get(service)
        if last is not None and now - last < self.expire_interval:
            return 0
        self._last_expire[service] = now
        return self.expire(service, self._clock() - self.retention)

    def __enter__(self) -> ExpiryMixin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
