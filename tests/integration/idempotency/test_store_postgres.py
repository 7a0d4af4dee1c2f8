"""PostgreSQL-only behaviour: a real race between two consumers, and a lost connection."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import psycopg
import pytest

from choreo.errors import InfrastructureError
from choreo.idempotency import DuplicateEventError, PostgresStore
from choreo.testing.processes import wait_until


@pytest.fixture
def pg_store(pg_url: str, service: str) -> Iterator[Callable[[], PostgresStore]]:
    """Opens stores of ``service`` (each its own connection); closes them and removes the rows after."""
    stores: list[PostgresStore] = []

    def make() -> PostgresStore:
        stores.append(PostgresStore(pg_url, service=service))
        return stores[-1]

    yield make
    for store in stores:
        store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM choreo_processed WHERE service = %s", (service,))


_BLOCKED_INSERTS = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event_type = 'Lock'
      AND query LIKE 'INSERT INTO choreo_processed%'
"""



def test_concurrent_record_of_one_event_lets_one_transaction_win(
    pg_store: Callable[[], PostgresStore], pg_url: str, service: str
) -> None:
    first, second = pg_store(), pg_store()
    outcome: list[BaseException | None] = []

    def loser() -> None:
        try:
            with second.transaction(service) as tx:
                tx.record("e1")  # blocks on first's uncommitted row, then fails on its commit
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    with first.transaction(service) as tx:
        tx.record("e1")
        thread = threading.Thread(target=loser)
        thread.start()
        with psycopg.connect(pg_url, autocommit=True) as admin:
            wait_until(lambda: admin.execute(_BLOCKED_INSERTS).fetchone()[0] > 0, 10, interval_s=0.01,
                       message="the insert to block")
    thread.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], DuplicateEventError)
    assert first.seen(service, ["e1"]) == {"e1"}


def test_a_lost_connection_is_reported_then_reopened(
    pg_store: Callable[[], PostgresStore], pg_url: str, service: str
) -> None:
    store = pg_store()
    store.mark_processed(service, ["a"])
    pid = store._conn.info.backend_pid
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(InfrastructureError, match="lost the PostgreSQL store"):
        store.seen(service, ["a"])
    assert store.seen(service, ["a"]) == {"a"}  # reconnected on the next call
