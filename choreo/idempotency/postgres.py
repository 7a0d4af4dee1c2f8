"""The production store: PostgreSQL through psycopg 3, shared by many services (rows carry ``service``).

Every operation is one short transaction (``conn.transaction()``, autocommit off), so the connection is never
left idle in a transaction between batches. Batches travel as one array parameter (``= ANY(%s)``,
``unnest(%s::text[])``): one round trip per batch whatever its size. psycopg prepares repeated statements.

Thread-safety: one store per consumer thread (a psycopg connection serialises its users, but a transaction
is per connection, so two threads would share one). A broken connection is reopened on the next call;
connection failures surface as ``InfrastructureError`` naming the URL without its password.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors

from choreo.errors import ConfigError, InfrastructureError
from choreo.idempotency.base import (
    DEFAULT_EXPIRE_INTERVAL,
    DEFAULT_RETENTION,
    Dialect,
    DuplicateEventError,
    ExpiryMixin,
    OutboxRecord,
    ReadView,
    decode_headers,
    encode_headers,
    require_aware,
    split_blocks,
    unique,
    utc_now,
)

log = logging.getLogger(__name__)

# Services starting side by side would race on CREATE TABLE IF NOT EXISTS (it is not atomic in PostgreSQL).
_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('choreo.idempotency.schema'))"
_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS choreo_processed (
        service      text        NOT NULL,
        event_id     text        NOT NULL,
        processed_at timestamptz NOT NULL,
        PRIMARY KEY (service, event_id))""",
    "CREATE INDEX IF NOT EXISTS choreo_processed_expiry ON choreo_processed (service, processed_at)",
    """CREATE TABLE IF NOT EXISTS choreo_outbox (
        service        text        NOT NULL,
        input_event_id text        NOT NULL,   -- the event whose handling produced this output
        seq            integer     NOT NULL,   -- position among that event's outputs
        event_id       text        NOT NULL,   -- the output's own ce_id
        topic          text        NOT NULL,
        key            bytea,
        value          bytea       NOT NULL,
        headers        text        NOT NULL,   -- JSON [[name, base64 | null], ...]
        created_at     timestamptz NOT NULL,
        PRIMARY KEY (service, input_event_id, seq))""",
    "CREATE INDEX IF NOT EXISTS choreo_outbox_event ON choreo_outbox (service, event_id)",
    "CREATE INDEX IF NOT EXISTS choreo_outbox_expiry ON choreo_outbox (service, created_at)",
    """CREATE TABLE IF NOT EXISTS choreo_blocked_keys (
        service          text        NOT NULL,
        key              text        NOT NULL,   -- the entity id (decoded Kafka key)
        blocker_event_id text        NOT NULL,   -- the event waiting in a retry topic
        blocked_at       timestamptz NOT NULL,
        PRIMARY KEY (service, key))""",
    """CREATE TABLE IF NOT EXISTS choreo_parked (
        service    text        NOT NULL,
        key        text        NOT NULL,         -- the entity id it is parked behind
        seq        bigserial   PRIMARY KEY,      -- arrival order
        event_id   text        NOT NULL,         -- the parked event's ce_id
        topic      text        NOT NULL,
        record_key bytea,                        -- the raw Kafka key
        value      bytea       NOT NULL,
        headers    text        NOT NULL,         -- JSON [[name, base64 | null], ...]
        parked_at  timestamptz NOT NULL,
        UNIQUE (service, event_id))""",
    "CREATE INDEX IF NOT EXISTS choreo_parked_key ON choreo_parked (service, key, seq)",
]


def redact_url(url: str) -> str:
    """``url`` with any password (in the authority or a ``password=`` parameter) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{hostinfo}"
    query = urlencode(
        [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def connect(url: str, connect_timeout: float = 10.0) -> psycopg.Connection:
    """A non-autocommit connection, or ``InfrastructureError`` / ``ConfigError`` naming the redacted URL."""
    try:
        return psycopg.connect(url, autocommit=False, connect_timeout=max(1, round(connect_timeout)))
    except psycopg.OperationalError as exc:
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise InfrastructureError(f"cannot reach PostgreSQL at {redact_url(url)}: {reason}") from exc
    except psycopg.ProgrammingError as exc:  # libpq rejected the URL itself
        raise ConfigError(f"invalid PostgreSQL URL {redact_url(url)}: {exc}") from exc


class PostgresTransaction:
    """``StoreTransaction`` over the store's connection (see ``PostgresStore.transaction``)."""

    dialect: Dialect = "postgresql"

    def __init__(self, connection: psycopg.Connection, service: str, clock: Callable[[], datetime]) -> None:
        self.connection = connection
        self.service = service
        self._clock = clock

    def record(self, event_id: str, outputs: Sequence[OutboxRecord] = ()) -> None:
        now = self._clock()
        with self.connection.cursor() as cur:
            try:
                cur.execute(
                    "INSERT INTO choreo_processed (service, event_id, processed_at) VALUES (%s, %s, %s)",
                    (self.service, event_id, now),
                )
            except pg_errors.UniqueViolation:
                raise DuplicateEventError(self.service, event_id) from None
            if outputs:
                cur.executemany(
                    "INSERT INTO choreo_outbox (service, input_event_id, seq, event_id, topic, key, value,"
                    " headers, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (self.service, event_id, seq, out.event_id, out.topic, out.key, out.value,
                         encode_headers(out.headers), now)
                        for seq, out in enumerate(outputs)
                    ],
                )


class PostgresStore(ExpiryMixin):
    """``IdempotencyStore`` in PostgreSQL. See the module docstring."""

    dialect: Dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        service: str = "",
        retention: timedelta = DEFAULT_RETENTION,
        expire_interval: float = DEFAULT_EXPIRE_INTERVAL,
        clock: Callable[[], datetime] = utc_now,
        connect_timeout: float = 10.0,
    ) -> None:
        self._init_expiry(service, retention, expire_interval, clock)
        self.url = url
        self._connect_timeout = connect_timeout
        self._depth = 0  # > 0 while a transaction of ours is open
        self._conn: psycopg.Connection | None = connect(url, connect_timeout)
        with self._unit() as conn:
            conn.execute(_SCHEMA_LOCK)
            for statement in _SCHEMA:
                conn.execute(statement)
        log.debug("opened PostgreSQL store", extra={"service": service, "url": redact_url(url)})

    def _connection(self) -> psycopg.Connection:
        if self._conn is None:
            raise InfrastructureError("the PostgreSQL store is closed")
        if self._depth:
            return self._conn  # inside transaction(): join it (as a savepoint), never reconnect mid-way
        if self._conn.broken or self._conn.closed:
            log.warning("reconnecting the PostgreSQL store", extra={"url": redact_url(self.url)})
            self._conn = connect(self.url, self._connect_timeout)
        elif self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._conn.rollback()  # a leftover implicit transaction would turn ours into a savepoint
        return self._conn

    @contextmanager
    def _unit(self) -> Iterator[psycopg.Connection]:
        """One transaction: commit on success, roll back on error; a lost connection → InfrastructureError."""
        conn = self._connection()
        self._depth += 1
        try:
            with conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            if not conn.broken:
                raise
            raise InfrastructureError(f"lost the PostgreSQL store at {redact_url(self.url)}: {exc}") from exc
        finally:
            self._depth -= 1

    def seen(self, service: str, event_ids: Iterable[str]) -> set[str]:
        ids = unique(event_ids)
        if not ids:
            return set()
        with self._unit() as conn:
            rows = conn.execute(
                "SELECT event_id FROM choreo_processed WHERE service = %s AND event_id = ANY(%s)",
                (service, ids),
            ).fetchall()
        return {row[0] for row in rows}

    def mark_processed(self, service: str, event_ids: Iterable[str]) -> None:
        ids = unique(event_ids)
        if not ids:
            return
        with self._unit() as conn:
            conn.execute(
                "INSERT INTO choreo_processed (service, event_id, processed_at)"
                " SELECT %s, unnest(%s::text[]), %s ON CONFLICT DO NOTHING",
                (service, ids, self._clock()),
            )

    @contextmanager
    def read(self, service: str) -> Iterator[ReadView]:
        with self._unit() as conn:  # PostgreSQL reads take no lock that a writer waits for
            yield ReadView(conn, "postgresql", service)

    @contextmanager
    def transaction(self, service: str) -> Iterator[PostgresTransaction]:
        # conn.transaction() forbids conn.commit() inside: a handler cannot split its state from the mark.
        with self._unit() as conn:
            yield PostgresTransaction(conn, service, self._clock)

    def pending_outbox(self, service: str, event_ids: Iterable[str]) -> dict[str, list[OutboxRecord]]:
        ids = unique(event_ids)
        if not ids:
            return {}
        with self._unit() as conn:
            rows = conn.execute(
                "SELECT input_event_id, topic, key, value, headers, event_id FROM choreo_outbox"
                " WHERE service = %s AND input_event_id = ANY(%s) ORDER BY input_event_id, seq",
                (service, ids),
            ).fetchall()
        found: dict[str, list[OutboxRecord]] = {}
        for input_id, topic, key, value, headers, event_id in rows:
            found.setdefault(input_id, []).append(
                OutboxRecord(topic, None if key is None else bytes(key), bytes(value),
                             decode_headers(headers), event_id)
            )
        return {event_id: found[event_id] for event_id in ids if event_id in found}

    def outbox_sent(self, service: str, event_ids: Iterable[str]) -> None:
        ids = unique(event_ids)
        if not ids:
            return
        with self._unit() as conn:
            conn.execute(
                "DELETE FROM choreo_outbox WHERE service = %s"
                " AND (input_event_id = ANY(%s) OR event_id = ANY(%s))",
                (service, ids, ids),
            )

    def expire(self, service: str, older_than: datetime) -> int:
        cutoff = require_aware(older_than)
        with self._unit() as conn:
            deleted = conn.execute(
                "DELETE FROM choreo_processed WHERE service = %s AND processed_at < %s", (service, cutoff)
            ).rowcount
            conn.execute(
                "DELETE FROM choreo_outbox WHERE service = %s AND created_at < %s", (service, cutoff)
            )
        return deleted

    # -- ordered retries per key: blocked keys and the records parked behind them --------------------------

    def blockers(self, service: str, keys: Iterable[str]) -> dict[str, str]:
        wanted = unique(keys)
        if not wanted:
            return {}
        with self._unit() as conn:
            rows = conn.execute(
                "SELECT key, blocker_event_id FROM choreo_blocked_keys WHERE service = %s AND key = ANY(%s)",
                (service, wanted),
            ).fetchall()
        return {key: blocker for key, blocker in rows}

    def stranded(self, service: str, keys: Iterable[str]) -> list[str]:
        wanted = unique(keys)
        if not wanted:
            return []
        with self._unit() as conn:
            rows = conn.execute(
                "SELECT DISTINCT p.key FROM choreo_parked AS p WHERE p.service = %s AND p.key = ANY(%s)"
                " AND NOT EXISTS (SELECT 1 FROM choreo_blocked_keys AS b"
                " WHERE b.service = p.service AND b.key = p.key)",
                (service, wanted),
            ).fetchall()
        return sorted(row[0] for row in rows)

    def parked(self, service: str, key: str) -> list[OutboxRecord]:
        with self._unit() as conn:
            rows = conn.execute(
                "SELECT topic, record_key, value, headers, event_id FROM choreo_parked"
                " WHERE service = %s AND key = %s ORDER BY seq",
                (service, key),
            ).fetchall()
        return [
            OutboxRecord(topic, None if record_key is None else bytes(record_key), bytes(value),
                         decode_headers(headers), event_id)
            for topic, record_key, value, headers, event_id in rows
        ]

    def apply_parking(
        self,
        service: str,
        *,
        blocks: Mapping[str, str | None],
        parked: Sequence[tuple[str, OutboxRecord]],
        released: Sequence[str],
    ) -> None:
        upserts, unblocks = split_blocks(blocks)
        released_ids = unique(released)
        if not (parked or released_ids or upserts or unblocks):
            return
        now = self._clock()
        with self._unit() as conn, conn.cursor() as cur:
            if parked:
                # One statement per row, run in order: the bigserial seq follows the given (arrival) order.
                cur.executemany(
                    "INSERT INTO choreo_parked (service, key, event_id, topic, record_key, value, headers,"
                    " parked_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (service, event_id) DO NOTHING",
                    [
                        (service, key, rec.event_id, rec.topic, rec.key, rec.value,
                         encode_headers(rec.headers), now)
                        for key, rec in parked
                    ],
                )
            if released_ids:
                cur.execute(
                    "DELETE FROM choreo_parked WHERE service = %s AND event_id = ANY(%s)",
                    (service, released_ids),
                )
            if upserts:
                cur.execute(
                    "INSERT INTO choreo_blocked_keys (service, key, blocker_event_id, blocked_at)"
                    " SELECT %s, k, b, %s FROM unnest(%s::text[], %s::text[]) AS u(k, b)"
                    " ON CONFLICT (service, key) DO UPDATE SET"
                    " blocked_at = CASE WHEN choreo_blocked_keys.blocker_event_id = excluded.blocker_event_id"
                    " THEN choreo_blocked_keys.blocked_at ELSE excluded.blocked_at END,"
                    " blocker_event_id = excluded.blocker_event_id",
                    (service, now, [key for key, _ in upserts], [blocker for _, blocker in upserts]),
                )
            if unblocks:
                cur.execute(
                    "DELETE FROM choreo_blocked_keys WHERE service = %s AND key = ANY(%s)",
                    (service, unblocks),
                )

    def reopen(self) -> PostgresStore:
        """A second connection to the same database (for another thread)."""
        return PostgresStore(self.url, service=self.service, retention=self.retention,
                             expire_interval=self.expire_interval, clock=self._clock,
                             connect_timeout=self._connect_timeout)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # an open transaction is rolled back by the server
            self._conn = None
