"""Pure pieces of the stores: header encoding, URL redaction and parsing, the record type, argument checks."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from choreo.errors import ChoreoError, ConfigError
from choreo.idempotency import DuplicateEventError, IdempotencyStore, OutboxRecord, SQLiteStore
from choreo.idempotency.base import chunks, decode_headers, encode_headers, require_aware, unique
from choreo.idempotency.factory import sqlite_path
from choreo.idempotency.postgres import redact_url


def test_headers_round_trip_any_bytes_and_none() -> None:
    headers = [("ce_id", b"abc"), ("bin", bytes(range(256))), ("empty", b""), ("null", None), ("ce_id", b"2")]
    text = encode_headers(headers)
    assert isinstance(text, str)
    assert decode_headers(text) == headers


def test_outbox_record_is_frozen_and_compares_by_value() -> None:
    record = OutboxRecord("orders", b"k", b"v", [("h", b"1")], "id-1")
    assert record == OutboxRecord("orders", b"k", b"v", [("h", b"1")], "id-1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.topic = "payments"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@db:5432/x", "postgresql://u:***@db:5432/x"),
        ("postgresql://u@db/x", "postgresql://u@db/x"),
        ("postgresql://db/x?password=secret&sslmode=require", "postgresql://db/x?password=***&sslmode=require"),
        ("postgres://u:p%40ss@db/x", "postgres://u:***@db/x"),
    ],
)
def test_redact_url_hides_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, "state/orders.sqlite3"),
        ("", "state/orders.sqlite3"),
        ("sqlite:///data/x.db", "data/x.db"),
        ("sqlite:////var/lib/x.db", "/var/lib/x.db"),
        ("sqlite:///data/", "data/orders.sqlite3"),
    ],
)
def test_sqlite_path(url: str | None, expected: str) -> None:
    assert sqlite_path(url, Path("state"), "orders") == Path(expected)


def test_sqlite_path_needs_a_file() -> None:
    with pytest.raises(ConfigError, match="names no file"):
        sqlite_path("sqlite://", Path("state"), "orders")


def test_unique_keeps_first_occurrence_order_and_chunks_cover_everything() -> None:
    assert unique(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
    assert [list(part) for part in chunks(["a", "b", "c", "d", "e"], 2)] == [["a", "b"], ["c", "d"], ["e"]]


def test_naive_datetimes_are_refused() -> None:
    aware = datetime(2030, 1, 1, tzinfo=UTC)
    assert require_aware(aware) is aware
    with pytest.raises(ValueError, match="timezone-aware"):
        require_aware(datetime(2030, 1, 1))


def test_duplicate_event_error_names_service_and_event() -> None:
    error = DuplicateEventError("payments", "e-1")
    assert isinstance(error, ChoreoError)
    assert (error.service, error.event_id) == ("payments", "e-1")
    assert "e-1" in str(error) and "payments" in str(error)


def test_an_in_memory_store_satisfies_the_protocol_and_checks_retention() -> None:
    with SQLiteStore(":memory:", service="orders") as store:
        assert isinstance(store, IdempotencyStore)
        assert store.dialect == "sqlite"
    with pytest.raises(ValueError, match="retention"):
        SQLiteStore(":memory:", retention=timedelta(0))
