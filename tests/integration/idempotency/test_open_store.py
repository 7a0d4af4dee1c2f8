"""open_store: the backend follows CHOREO_STORE_URL; bad URLs fail with one clear error."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from choreo.config import Settings
from choreo.errors import ConfigError, InfrastructureError
from choreo.idempotency import IdempotencyStore, PostgresStore, SQLiteStore, open_store


@pytest.fixture
def opened() -> Iterator[list[IdempotencyStore]]:
    stores: list[IdempotencyStore] = []
    yield stores
    for store in stores:
        store.close()


def settings(tmp_path: Path, store_url: str | None = None) -> Settings:
    return Settings(state_dir=tmp_path / "state" / "nested", store_url=store_url)


def test_default_is_sqlite_under_the_state_dir(tmp_path: Path, opened: list[IdempotencyStore]) -> None:
    store = open_store(settings(tmp_path), "payments")
    opened.append(store)
    assert isinstance(store, SQLiteStore) and isinstance(store, IdempotencyStore)
    assert store.service == "payments"
    assert Path(store.path) == tmp_path / "state" / "nested" / "payments.sqlite3"
    assert Path(store.path).exists()
    journal_mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert journal_mode == "wal"


def test_the_state_dir_setting_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[IdempotencyStore]
) -> None:
    monkeypatch.setenv("CHOREO_STATE_DIR", str(tmp_path / "from-env"))
    monkeypatch.delenv("CHOREO_STORE_URL", raising=False)
    store = open_store(Settings(), "orders")
    opened.append(store)
    assert Path(store.path) == tmp_path / "from-env" / "orders.sqlite3"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///relative/store.db", "relative/store.db"),
        ("sqlite:///{tmp}/absolute/store.db", "{tmp}/absolute/store.db"),
        ("sqlite:///dir/", "dir/orders.sqlite3"),
    ],
)
def test_sqlite_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[IdempotencyStore], url: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store(settings(tmp_path, url.format(tmp=tmp_path)), "orders")
    opened.append(store)
    assert isinstance(store, SQLiteStore)
    assert Path(store.path) == Path(expected.format(tmp=tmp_path))
    assert (tmp_path / Path(store.path)).exists()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgres_urls(
    tmp_path: Path, pg_url: str, opened: list[IdempotencyStore], scheme: str, service: str
) -> None:
    url = scheme + ":" + pg_url.partition(":")[2]
    store = open_store(settings(tmp_path, url), service, retention=timedelta(hours=1), expire_interval=5)
    opened.append(store)
    assert isinstance(store, PostgresStore) and isinstance(store, IdempotencyStore)
    assert (store.dialect, store.retention, store.expire_interval) == ("postgresql", timedelta(hours=1), 5)
    assert not (tmp_path / "state").exists()  # nothing written locally
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('choreo_processed')").fetchone()[0] is not None


def test_retention_comes_from_settings_when_they_have_it(
    tmp_path: Path, opened: list[IdempotencyStore]
) -> None:
    class WithRetention(Settings):
        store_retention: timedelta = timedelta(days=2)
        store_expire_interval: float = 10.0

    store = open_store(WithRetention(state_dir=tmp_path), "orders")
    opened.append(store)
    assert (store.retention, store.expire_interval) == (timedelta(days=2), 10.0)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("mysql://user:hunter2@db/choreo", "'mysql'"),
        ("redis://localhost", "'redis'"),
        ("/var/lib/choreo/store.db", "'(none)'"),
    ],
)
def test_an_unknown_scheme_is_a_config_error(tmp_path: Path, url: str, named: str) -> None:
    with pytest.raises(ConfigError, match="unsupported scheme") as raised:
        open_store(settings(tmp_path, url), "orders")
    message = str(raised.value)
    assert named in message and "postgresql://" in message and "sqlite:///" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/x.db"])
def test_a_sqlite_url_without_a_path_is_a_config_error(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="names no file"):
        open_store(settings(tmp_path, url), "orders")


@pytest.mark.parametrize("service", ["", "../escape", "a/b"])
def test_a_service_name_that_cannot_name_a_file_is_a_config_error(tmp_path: Path, service: str) -> None:
    with pytest.raises(ConfigError, match="service name"):
        open_store(settings(tmp_path), service)


def test_an_unreachable_postgres_is_an_infrastructure_error_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://choreo:hunter2@127.0.0.1:1/choreo"
    with pytest.raises(InfrastructureError) as raised:
        open_store(settings(tmp_path, url), "orders")
    message = str(raised.value)
    assert "cannot reach PostgreSQL at postgresql://choreo:***@127.0.0.1:1/choreo" in message
    assert "hunter2" not in message


def test_a_malformed_postgres_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid PostgreSQL URL"):
        open_store(settings(tmp_path, "postgresql://127.0.0.1/test?nonsense=1"), "orders")
