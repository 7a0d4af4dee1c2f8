"""Portable SQL for a service's own state tables, through the handler's store transaction.

A transactional handler (``@service.handler(X, transactional=True)``, joins, timer handlers) writes its
state through ``ctx.tx``; the store commits it together with the processed mark, the outbox and any
timers in one database transaction (the inbox pattern). Write SQL with ``?`` placeholders: these helpers
turn them into ``%s`` on PostgreSQL, so one statement runs on both stores. Declare your tables with
``Service(..., state_ddl=(...))``; they are created (``CREATE TABLE IF NOT EXISTS``) when the service starts.

On PostgreSQL every service shares one database: prefix table names with the service's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Params = Sequence[Any]


def portable(sql: str, dialect: str) -> str:
    """``sql`` with ``?`` placeholders rewritten for ``dialect`` (no ``?`` may appear in string literals)."""
    return sql.replace("?", "%s") if dialect == "postgresql" else sql


def execute(tx: Any, sql: str, params: Params = ()) -> Any:
    """Run one statement in the open transaction ``tx``; returns the cursor."""
    return tx.connection.execute(portable(sql, tx.dialect), tuple(params))


def fetchone(tx: Any, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
    """The first row of a query (a tuple), or None."""
    row = execute(tx, sql, params).fetchone()
    return tuple(row) if row is not None else None


def fetchall(tx: Any, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    """Every row of a query, as tuples."""
    return [tuple(row) for row in execute(tx, sql, params).fetchall()]
