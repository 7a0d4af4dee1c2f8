"""The progress service's own tables (``progress_*``), on the store ``open_store(settings, "progress")``.

Facts (``progress_events``, ``progress_task_records``, ``progress_dead_letters``) are inserted with
``ON CONFLICT DO NOTHING``: a redelivered record is a no-op, so the consumer can commit its offsets after
the facts and be at least once without double counting. ``progress_jobs`` holds each job's derived
resource (its JSON without links, its status for the list, whether it is settled), rewritten in the same
transaction as the facts it derives from. ``progress_alerts`` remembers the escalations already made
(once per job and cause, across restarts).

Portable SQL (``?`` placeholders, see :mod:`choreo.state`) for SQLite and PostgreSQL. Thread-safety: as
the store's: one :class:`ProgressTables` per thread; the HTTP side uses :class:`ReadPool`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from choreo.idempotency import IdempotencyStore
from choreo.idempotency.base import chunks
from choreo.progress.model import DeadLetterFact, EventFact, JobView, TaskFact
from choreo.state import execute, fetchall, fetchone

SERVICE = "progress"
DDL_LOCK = "SELECT pg_advisory_xact_lock(hashtext('choreo.progress.tables'))"
DDL = (
    "CREATE TABLE IF NOT EXISTS progress_events (event_id TEXT PRIMARY KEY, job_id TEXT NOT NULL,"
    " event_type TEXT NOT NULL, causation_id TEXT, time_ms BIGINT, deadline_ms BIGINT, end_status TEXT,"
    " end_reason TEXT)",
    "CREATE INDEX IF NOT EXISTS progress_events_job ON progress_events (job_id)",
    "CREATE TABLE IF NOT EXISTS progress_task_records (task_id TEXT NOT NULL, attempt INTEGER NOT NULL,"
    " status TEXT NOT NULL, stopped_ms BIGINT NOT NULL, job_id TEXT NOT NULL, service TEXT NOT NULL,"
    " input_id TEXT NOT NULL, input_type TEXT NOT NULL, started_ms BIGINT NOT NULL,"
    " PRIMARY KEY (task_id, attempt, status, stopped_ms))",
    "CREATE INDEX IF NOT EXISTS progress_task_records_job ON progress_task_records (job_id)",
    "CREATE TABLE IF NOT EXISTS progress_dead_letters (topic TEXT NOT NULL, dlq_partition INTEGER NOT NULL,"
    " dlq_offset BIGINT NOT NULL, job_id TEXT NOT NULL, service TEXT NOT NULL, event_id TEXT NOT NULL,"
    " PRIMARY KEY (topic, dlq_partition, dlq_offset))",
    "CREATE INDEX IF NOT EXISTS progress_dead_letters_job ON progress_dead_letters (job_id)",
    "CREATE TABLE IF NOT EXISTS progress_jobs (job_id TEXT PRIMARY KEY, status TEXT NOT NULL, reason TEXT,"
    " started_ms BIGINT, stopped_ms BIGINT, end_status TEXT, settled INTEGER NOT NULL, body TEXT NOT NULL,"
    " updated_ms BIGINT NOT NULL, finished INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS progress_jobs_recent ON progress_jobs (updated_ms)",
    "CREATE INDEX IF NOT EXISTS progress_jobs_status ON progress_jobs (status, updated_ms)",
    "CREATE TABLE IF NOT EXISTS progress_alerts (job_id TEXT NOT NULL, cause TEXT NOT NULL,"
    " alerted_ms BIGINT NOT NULL, sent INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (job_id, cause))",
)
_IN_CHUNK = 500


@dataclass(frozen=True)
class StoredJob:
    """A row of ``progress_jobs``: what the HTTP side serves."""

    job_id: str
    status: str
    reason: str | None
    started_ms: int | None
    stopped_ms: int | None
    settled: bool
    body: str
    finished: bool
    end_status: str | None = None


def create_tables(store: IdempotencyStore) -> None:
    with store.transaction(SERVICE) as tx:
        if tx.dialect == "postgresql":
            tx.connection.execute(DDL_LOCK)
        for statement in DDL:
            tx.connection.execute(statement)


class ProgressTables:
    """Reads and writes of the ``progress_*`` tables inside one open transaction (or read view) ``tx``."""

    def __init__(self, tx: Any) -> None:
        self.tx = tx

    # -- facts ---------------------------------------------------------------------------------------------
    def add_events(self, events: Sequence[EventFact]) -> None:
        for e in events:
            execute(self.tx, "INSERT INTO progress_events (event_id, job_id, event_type, causation_id, time_ms,"
                             " deadline_ms, end_status, end_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                             " ON CONFLICT DO NOTHING",
                    (e.event_id, e.job_id, e.event_type, e.causation_id, e.time_ms, e.deadline_ms, e.end_status,
                     e.end_reason))

    def add_tasks(self, tasks: Sequence[TaskFact]) -> None:
        for t in tasks:
            execute(self.tx, "INSERT INTO progress_task_records (task_id, attempt, status, stopped_ms, job_id,"
                             " service, input_id, input_type, started_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                             " ON CONFLICT DO NOTHING",
                    (t.task_id, t.attempt, t.status, t.stopped_ms, t.job_id, t.service, t.input_id, t.input_type,
                     t.started_ms))

    def add_dead_letters(self, letters: Sequence[DeadLetterFact]) -> None:
        for d in letters:
            execute(self.tx, "INSERT INTO progress_dead_letters (topic, dlq_partition, dlq_offset, job_id, service,"
                             " event_id) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (d.topic, d.partition, d.offset, d.job_id, d.service, d.event_id))

    def facts(self, job_ids: Sequence[str]) -> tuple[dict[str, list[EventFact]], dict[str, list[TaskFact]]]:
        """Every event and task fact of ``job_ids``, grouped by job."""
        events: dict[str, list[EventFact]] = {}
        tasks: dict[str, list[TaskFact]] = {}
        for part in chunks(list(job_ids), _IN_CHUNK):
            marks = ", ".join("?" * len(part))
            for row in fetchall(self.tx, "SELECT event_id, job_id, event_type, causation_id, time_ms, deadline_ms,"
                                         f" end_status, end_reason FROM progress_events WHERE job_id IN ({marks})",
                                part):
                events.setdefault(row[1], []).append(EventFact(*row))
            for row in fetchall(self.tx, "SELECT task_id, job_id, service, status, attempt, input_id, input_type,"
                                         " started_ms, stopped_ms FROM progress_task_records"
                                         f" WHERE job_id IN ({marks})", part):
                tasks.setdefault(row[1], []).append(TaskFact(*row))
        return events, tasks

    def dead_letters(self, job_id: str) -> list[DeadLetterFact]:
        rows = fetchall(self.tx, "SELECT topic, dlq_partition, dlq_offset, job_id, service, event_id"
                                 " FROM progress_dead_letters WHERE job_id = ? ORDER BY dlq_offset", (job_id,))
        return [DeadLetterFact(*row) for row in rows]

    # -- derived jobs --------------------------------------------------------------------------------------
    def jobs(self, job_ids: Iterable[str]) -> dict[str, StoredJob]:
        found: dict[str, StoredJob] = {}
        for part in chunks(list(job_ids), _IN_CHUNK):
            marks = ", ".join("?" * len(part))
            for row in fetchall(self.tx, "SELECT job_id, status, reason, started_ms, stopped_ms, settled, body,"
                                         f" finished, end_status FROM progress_jobs WHERE job_id IN ({marks})",
                                part):
                found[row[0]] = _stored(row)
        return found

    def job(self, job_id: str) -> StoredJob | None:
        row = fetchone(self.tx, "SELECT job_id, status, reason, started_ms, stopped_ms, settled, body, finished,"
                                " end_status FROM progress_jobs WHERE job_id = ?", (job_id,))
        return _stored(row) if row else None

    def put_job(self, view: JobView, body: str, now_ms: int, finished: bool) -> None:
        execute(self.tx, "INSERT INTO progress_jobs (job_id, status, reason, started_ms, stopped_ms, end_status,"
                         " settled, body, updated_ms, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                         " ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, reason = excluded.reason,"
                         " started_ms = excluded.started_ms, stopped_ms = excluded.stopped_ms,"
                         " end_status = excluded.end_status, settled = excluded.settled, body = excluded.body,"
                         " updated_ms = excluded.updated_ms, finished = excluded.finished",
                (view.job_id, view.status, view.reason, view.started_ms, view.stopped_ms, view.end_status,
                 int(view.settled), body, now_ms, int(finished)))

    def recent(self, status: str | None, limit: int) -> list[StoredJob]:
        where, params = ("WHERE status = ? ", [status]) if status else ("", [])
        rows = fetchall(self.tx, "SELECT job_id, status, reason, started_ms, stopped_ms, settled, '', finished,"
                                 f" end_status FROM progress_jobs {where}ORDER BY updated_ms DESC, job_id LIMIT ?",
                        (*params, limit))
        return [_stored(row) for row in rows]

    def status_counts(self) -> dict[str, int]:
        return {row[0]: int(row[1]) for row in
                fetchall(self.tx, "SELECT status, COUNT(*) FROM progress_jobs GROUP BY status")}

    def expire(self, older_than_ms: int) -> int:
        """Forget jobs not updated since ``older_than_ms`` (their facts, alerts and resource)."""
        stale = "SELECT job_id FROM progress_jobs WHERE updated_ms < ?"
        for table in ("progress_events", "progress_task_records", "progress_dead_letters", "progress_alerts"):
            execute(self.tx, f"DELETE FROM {table} WHERE job_id IN ({stale})", (older_than_ms,))
        return int(execute(self.tx, "DELETE FROM progress_jobs WHERE updated_ms < ?", (older_than_ms,)).rowcount)

    # -- alerts --------------------------------------------------------------------------------------------
    def alerted(self, job_id: str) -> set[str]:
        return {row[0] for row in fetchall(self.tx, "SELECT cause FROM progress_alerts WHERE job_id = ?", (job_id,))}

    def add_alert(self, job_id: str, cause: str, now_ms: int, sent: bool) -> None:
        execute(self.tx, "INSERT INTO progress_alerts (job_id, cause, alerted_ms, sent) VALUES (?, ?, ?, ?)"
                         " ON CONFLICT DO NOTHING", (job_id, cause, now_ms, int(sent)))

    def mark_sent(self, keys: Iterable[tuple[str, str]]) -> None:
        for job_id, cause in keys:
            execute(self.tx, "UPDATE progress_alerts SET sent = 1 WHERE job_id = ? AND cause = ?", (job_id, cause))

    def unsent_alerts(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in fetchall(self.tx, "SELECT job_id, cause FROM progress_alerts WHERE sent = 0")]

    def alert_candidates(self) -> list[str]:
        """Jobs with a dead-lettered task or an expiry and no alert row for it (a restart's backlog)."""
        rows = fetchall(self.tx, "SELECT DISTINCT t.job_id FROM progress_task_records t WHERE t.status = ?"
                                 " AND NOT EXISTS (SELECT 1 FROM progress_alerts a WHERE a.job_id = t.job_id"
                                 " AND a.cause = 'dead-lettered:' || t.service)", ("dead-lettered",))
        rows += fetchall(self.tx, "SELECT j.job_id FROM progress_jobs j WHERE j.end_status = ? AND NOT EXISTS"
                                  " (SELECT 1 FROM progress_alerts a WHERE a.job_id = j.job_id AND a.cause = ?)",
                         ("expired", "expired"))
        return sorted({r[0] for r in rows})


def _stored(row: tuple[Any, ...]) -> StoredJob:
    return StoredJob(job_id=row[0], status=row[1], reason=row[2], started_ms=row[3], stopped_ms=row[4],
                     settled=bool(row[5]), body=row[6], finished=bool(row[7]), end_status=row[8])


class ReadPool:
    """Read connections for the HTTP threads: up to ``size`` independent connections (``store.reopen()``),
    each used by one thread at a time; a request waits for a free one."""

    def __init__(self, store: IdempotencyStore, size: int = 4) -> None:
        self._origin = store
        self._free: queue.LifoQueue[IdempotencyStore] = queue.LifoQueue()
        self._all: list[IdempotencyStore] = []
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def tables(self) -> Iterator[ProgressTables]:
        with self._slots:
            try:
                store = self._free.get_nowait()
            except queue.Empty:
                store = self._origin.reopen()
                self._all.append(store)
            try:
                with store.read(SERVICE) as view:
                    yield ProgressTables(view)
            finally:
                self._free.put(store)

    def close(self) -> None:
        for store in self._all:
            store.close()
