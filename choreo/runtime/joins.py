"""Joins at runtime: a join's parts are routes whose handler keeps the pending parts in the store.

Every part of a join (and its time limit) is handled in a store transaction, like an inbox handler:
the part row, the processed mark, the closed-join marker, the timer and the join handler's outputs
(outbox) commit together, so a crash or a rebalance at any point loses no part and fires nothing
twice (a re-run finds the part recorded or the join closed). Per part, for key K of join J:

1. J closed for K (completed or timed out) → the part is late: ignored and counted;
2. its type already arrived for K → a duplicate part: dropped and counted (the first copy counts);
3. the limit passed since the first part (the timer has not fired yet) → late, as 1;
4. parts still missing → the part is stored; the first one also schedules J's limit, a durable timer
   (:mod:`choreo.runtime.timers`) named ``join:<J>`` whose record is that first part;
5. the last missing part → the stored parts are loaded, J is closed for K, the timer cancelled, and
   the join handler runs with every part (its context is the completing part's).

When the timer fires with J still open for K, J is closed as timed out and ``on_timeout`` runs with the
parts that came (missing ones None). Closed markers are kept for the store's retention period.
Parts are stored as their pydantic JSON (joins are low-rate; no registry round trip to read them back).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from choreo.context import Context
from choreo.events import Event, EventBinding
from choreo.join import Joined, JoinSpec
from choreo.observability import metrics
from choreo.retry.headers import now_ms
from choreo.serde.avro import AvroEventSerde
from choreo.service import Handler
from choreo.state import execute, fetchall, fetchone


def timeout_timer_name(spec: JoinSpec) -> str:
    return f"join:{spec.name}"


class JoinTables:
    """The SQL of one join's rows for one service, run in the handler's transaction ``tx``."""

    def __init__(self, service: str, spec: JoinSpec) -> None:
        self.service, self.join = service, spec.name

    def closed(self, tx: Any, key: str) -> bool:
        return fetchone(tx, "SELECT 1 FROM choreo_join_closed WHERE service = ? AND join_name = ? AND key = ?",
                        (self.service, self.join, key)) is not None

    def parts(self, tx: Any, key: str) -> list[tuple[str, str, int]]:
        """(type name, JSON body, arrived ms) of the stored parts of ``key``."""
        return fetchall(tx, "SELECT part_type, body, arrived_ms FROM choreo_join_parts"
                            " WHERE service = ? AND join_name = ? AND key = ?", (self.service, self.join, key))

    def store(self, tx: Any, key: str, type_name: str, event_id: str, body: str) -> None:
        execute(tx, "INSERT INTO choreo_join_parts (service, join_name, key, part_type, event_id, body, arrived_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.service, self.join, key, type_name, event_id, body, now_ms()))

    def close(self, tx: Any, key: str, outcome: str) -> None:
        execute(tx, "DELETE FROM choreo_join_parts WHERE service = ? AND join_name = ? AND key = ?",
                (self.service, self.join, key))
        execute(tx, "INSERT INTO choreo_join_closed (service, join_name, key, outcome, closed_ms)"
                    " VALUES (?, ?, ?, ?, ?)", (self.service, self.join, key, outcome, now_ms()))
        metrics.JOINS_CLOSED.labels(self.service, self.join, outcome).inc()


class JoinPart:
    """The handler of one part type of a join (a ``Handler``: event + context → events to emit)."""

    def __init__(self, service: str, spec: JoinSpec, binding: EventBinding, classes: dict[str, type[Event]],
                 serde: AvroEventSerde, complete: Handler) -> None:
        self.service, self.spec, self.binding, self.serde = service, spec, binding, serde
        self.classes = classes  # part type name → event class
        self.complete = complete  # the user's join function, adapted (called with a Joined)
        self.tables = JoinTables(service, spec)
        self.within_ms = int(spec.within_s * 1000)

    def __call__(self, event: Event, ctx: Context) -> list[Event]:
        tx, tables, key = ctx.tx, self.tables, event.entity_key()
        if tables.closed(tx, key):
            return self._late()
        stored = tables.parts(tx, key)
        type_name = self.binding.type_name
        if any(part_type == type_name for part_type, _, _ in stored):
            metrics.JOIN_DUPLICATE_PARTS.labels(self.service, self.spec.name).inc()
            return []
        if stored and now_ms() > min(arrived for _, _, arrived in stored) + self.within_ms:
            return self._late()  # past the limit: the timeout (about to fire) decides, not this part
        if len(stored) + 1 < len(self.spec.parts):
            tables.store(tx, key, type_name, ctx.event_id, event.model_dump_json())
            if not stored:
                at = datetime.now(UTC) + timedelta(milliseconds=self.within_ms)
                ctx.timers.schedule_record(ctx, key, timeout_timer_name(self.spec), at, type_name,
                                           self.serde.encode(self.binding, event))
            return []
        parts = {self.classes[t]: self.classes[t].model_validate_json(body) for t, body, _ in stored}
        parts[type(event)] = event
        tables.close(tx, key, "completed")
        ctx.timers.cancel(ctx, key, timeout_timer_name(self.spec))
        return self.complete(Joined(self.spec.parts, parts), ctx)  # type: ignore[arg-type]

    def _late(self) -> list[Event]:
        metrics.JOIN_LATE_PARTS.labels(self.service, self.spec.name).inc()
        return []


class JoinTimeout:
    """The handler of a join's fired time limit: close the join for the key, call ``on_timeout``."""

    def __init__(self, service: str, spec: JoinSpec, classes: dict[str, type[Event]],
                 on_timeout: Handler | None) -> None:
        self.service, self.spec, self.classes, self.on_timeout = service, spec, classes, on_timeout
        self.tables = JoinTables(service, spec)

    def __call__(self, event: Event, ctx: Context) -> list[Event]:
        tx, key = ctx.tx, event.entity_key()
        if self.tables.closed(tx, key):
            return []  # completed just before its limit fired
        stored = self.tables.parts(tx, key)
        parts = {self.classes[t]: self.classes[t].model_validate_json(body) for t, body, _ in stored}
        self.tables.close(tx, key, "timed-out")
        if self.on_timeout is None:
            return []
        return self.on_timeout(Joined(self.spec.parts, parts), ctx)  # type: ignore[arg-type]


def expire_closed(store: Any, service: str, older_than_ms: int) -> None:
    """Forget closed-join markers older than ``older_than_ms`` (the store's retention: a part that old
    cannot be redelivered any more, so nothing is left for the marker to turn away)."""
    with store.transaction(service) as tx:
        execute(tx, "DELETE FROM choreo_join_closed WHERE service = ? AND closed_ms < ?", (service, older_than_ms))


JOIN_TABLES = {
    dialect: [
        """CREATE TABLE IF NOT EXISTS choreo_join_parts (
            service TEXT NOT NULL, join_name TEXT NOT NULL, key TEXT NOT NULL, part_type TEXT NOT NULL,
            event_id TEXT NOT NULL, body TEXT NOT NULL, arrived_ms BIGINT NOT NULL,
            PRIMARY KEY (service, join_name, key, part_type))""",
        """CREATE TABLE IF NOT EXISTS choreo_join_closed (
            service TEXT NOT NULL, join_name TEXT NOT NULL, key TEXT NOT NULL, outcome TEXT NOT NULL,
            closed_ms BIGINT NOT NULL, PRIMARY KEY (service, join_name, key))""",
        "CREATE INDEX IF NOT EXISTS choreo_join_closed_age ON choreo_join_closed (service, closed_ms)",
    ]
    for dialect in ("sqlite", "postgresql")
}
