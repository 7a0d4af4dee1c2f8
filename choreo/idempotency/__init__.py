"""Idempotency stores: which events a service processed (inbox) and what they emitted (outbox)."""

from choreo.idempotency.base import (
    DEFAULT_EXPIRE_INTERVAL,
    DEFAULT_RETENTION,
    DuplicateEventError,
    IdempotencyStore,
    OutboxRecord,
    ReadView,
    StoreTransaction,
)
from choreo.idempotency.factory import open_store
from choreo.idempotency.postgres import PostgresStore
from choreo.idempotency.sqlite import SQLiteStore

__all__ = [
    "DEFAULT_EXPIRE_INTERVAL",
    "DEFAULT_RETENTION",
    "DuplicateEventError",
    "IdempotencyStore",
    "OutboxRecord",
    "PostgresStore",
    "ReadView",
    "SQLiteStore",
    "StoreTransaction",
    "open_store",
]
