"""The tables a service needs beside the idempotency store's own: timers, joins, and the service's state.

Created once when the worker starts, in one transaction (``CREATE TABLE IF NOT EXISTS``), so a service
never runs against half its schema. On PostgreSQL every service shares the database and several
processes start at once: an advisory lock serialises their DDL (concurrent ``CREATE TABLE IF NOT
EXISTS`` of one table can fail on the catalog's unique index).
"""

from __future__ import annotations

from choreo.idempotency import IdempotencyStore
from choreo.runtime.joins import JOIN_TABLES
from choreo.runtime.timers import TIMER_TABLES
from choreo.service import BoundService

# Taken by every process creating shared tables (the order API creates its table before its worker runs).
DDL_LOCK = "SELECT pg_advisory_xact_lock(hashtext('choreo.runtime.tables'))"


def create_tables(store: IdempotencyStore, bound: BoundService) -> None:
    """Timer and join tables, then ``Service.state_ddl``, in one transaction of ``store``."""
    with store.transaction(bound.name) as tx:
        if tx.dialect == "postgresql":
            tx.connection.execute(DDL_LOCK)
        for statement in [*TIMER_TABLES[tx.dialect], *JOIN_TABLES[tx.dialect], *bound.service.state_ddl]:
            tx.connection.execute(statement)
