"""Real databases for the stores: SQLite in tmp_path, PostgreSQL on 127.0.0.1:5432 when it answers.

``CHOREO_TEST_POSTGRES_URL`` picks another PostgreSQL. Each test gets a unique service name (safe as a
table name); its PostgreSQL rows and tables are removed afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from choreo.idempotency import IdempotencyStore, PostgresStore, SQLiteStore

_CANDIDATES = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A reachable PostgreSQL URL, or the test is skipped saying why."""
    override = os.environ.get("CHOREO_TEST_POSTGRES_URL")
    errors = []
    for url in [override] if override else _CANDIDATES:
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return url
        except psycopg.Error as exc:
            errors.append(f"{url}: {str(exc).strip().splitlines()[0]}")
    pytest.skip("PostgreSQL not reachable (" + "; ".join(errors) + ")")


class Clock:
    """A clock the test moves by hand (stores stamp marks with it)."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """``unique_name("svc")`` → ``svc_1a2b3c4d5e6f``: lower case, usable as a table name."""
    token = uuid.uuid4().hex[:12]
    return lambda prefix: f"{prefix}_{token}"


@pytest.fixture
def service(unique_name: Callable[[str], str]) -> str:
    return unique_name("svc")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_store(
    backend: str,
    tmp_path: Path,
    clock: Clock,
    unique_name: Callable[[str], str],
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., IdempotencyStore]]:
    """``make_store(service=…)`` opens another store on the same database (one SQLite file / one PG db)."""
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    opened: list[IdempotencyStore] = []

    def make(service: str = "", **options: object) -> IdempotencyStore:
        options.setdefault("clock", clock)
        if url is None:
            store: IdempotencyStore = SQLiteStore(tmp_path / "store.sqlite3", service=service, **options)
        else:
            store = PostgresStore(url, service=service, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    if url is not None:
        _cleanup_postgres(url, unique_name("svc"), unique_name("state"))


def _cleanup_postgres(url: str, service_prefix: str, table: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for name in ("choreo_processed", "choreo_outbox", "choreo_blocked_keys", "choreo_parked"):
            conn.execute(f"DELETE FROM {name} WHERE service LIKE %s", (service_prefix + "%",))
        conn.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture
def store(make_store: Callable[..., IdempotencyStore], service: str) -> IdempotencyStore:
    return make_store(service)


@pytest.fixture
def state_table(unique_name: Callable[[str], str]) -> str:
    """Name of the table a test's "handler" keeps its own state in (dropped afterwards on PostgreSQL)."""
    return unique_name("state")
