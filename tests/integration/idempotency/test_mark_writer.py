"""MarkWriter on real stores (SQLite files and PostgreSQL): order, in-flight ids, linger, failures."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from choreo.errors import InfrastructureError
from choreo.idempotency import IdempotencyStore, SQLiteStore
from choreo.runtime.marks import MarkWriter
from choreo.testing.processes import wait_until


def _offsets(n: int) -> list[TopicPartition]:
    return [TopicPartition("orders", 0, n)]


def _wait_completed(writer: MarkWriter, batches: int, timeout_s: float = 10.0) -> list[list[TopicPartition]]:
    done: list[list[TopicPartition]] = []

    def all_done() -> bool:
        done.extend(writer.completed())
        return len(done) >= batches

    wait_until(all_done, timeout_s, interval_s=0.01, message=f"{batches} batches with durable marks")
    return done


def test_batches_complete_in_order_once_their_marks_are_durable(store: IdempotencyStore, service: str) -> None:
    writer = MarkWriter(store, service, linger_s=0.05)
    try:
        writer.submit(["a", "b"], _offsets(2))
        writer.submit([], _offsets(3))  # a batch with nothing to mark still keeps its place
        writer.submit(["c"], _offsets(4))
        assert writer.in_flight == {"a", "b", "c"}  # handled, not yet durable: still "seen"
        done = _wait_completed(writer, 3)
        assert [o[0].offset for o in done] == [2, 3, 4]
        assert writer.in_flight == set()
        assert store.seen(service, ["a", "b", "c", "d"]) == {"a", "b", "c"}
    finally:
        writer.close()


def test_drain_writes_at_once_instead_of_waiting_out_the_linger(store: IdempotencyStore, service: str) -> None:
    writer = MarkWriter(store, service, linger_s=30.0)
    try:
        writer.submit(["a"], _offsets(1))
        done = writer.drain(timeout_s=10)  # < linger_s: a drain that waited out the linger returns []
        assert [o[0].offset for o in done] == [1]
        assert store.seen(service, ["a"]) == {"a"}
    finally:
        writer.close()


def test_a_full_group_is_written_before_the_linger_ends(store: IdempotencyStore, service: str) -> None:
    writer = MarkWriter(store, service, linger_s=30.0, max_group_ids=3)
    try:
        writer.submit(["a", "b"], _offsets(1))
        writer.submit(["c"], _offsets(2))
        assert [o[0].offset for o in _wait_completed(writer, 2, timeout_s=5)] == [1, 2]
    finally:
        writer.close()


def test_an_in_memory_store_is_marked_inline_with_the_same_contract(service: str) -> None:
    store = SQLiteStore(":memory:", service=service)
    writer = MarkWriter(store, service)
    writer.submit(["a"], _offsets(1))
    assert store.seen(service, ["a"]) == {"a"}
    assert [o[0].offset for o in writer.completed()] == [1]
    assert [o[0].offset for o in writer.close()] == []
    store.close()


class LockedStore:
    """A SQLite store whose write lock another connection holds (as another process would)."""

    def __init__(self, path: Path, service: str) -> None:
        self.path = path
        self.store = SQLiteStore(path, service=service, busy_timeout=0.05)
        self._blocker = sqlite3.connect(path, isolation_level=None)
        self._blocker.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self._blocker.in_transaction:
            self._blocker.execute("ROLLBACK")

    def close(self) -> None:
        self.release()
        self._blocker.close()
        self.store.close()


@contextmanager
def locked_store(tmp_path: Path, service: str) -> Iterator[LockedStore]:
    locked = LockedStore(tmp_path / "locked.sqlite3", service)
    try:
        yield locked
    finally:
        locked.close()


def test_a_locked_store_is_retried_until_the_marks_commit(tmp_path: Path, service: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with locked_store(tmp_path, service) as locked:
        writer = MarkWriter(locked.store, service, linger_s=0.01)
        try:
            writer.submit(["a"], _offsets(1))
            wait_until(lambda: "writing marks failed" in caplog.text, 10, message="a failed attempt")
            assert writer.completed() == []  # offsets wait for the marks
            assert writer.in_flight == {"a"}
            locked.release()
            assert [o[0].offset for o in _wait_completed(writer, 1)] == [1]
            assert locked.store.seen(service, ["a"]) == {"a"}
        finally:
            writer.close()


def test_closing_on_a_dead_store_gives_up_and_keeps_the_offsets_unstored(tmp_path: Path, service: str,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    with locked_store(tmp_path, service) as locked:
        writer = MarkWriter(locked.store, service, linger_s=0.01)
        try:
            writer.submit(["a"], _offsets(1))
            writer.submit(["b"], _offsets(2))
            assert writer.close(timeout_s=1) == []  # neither batch may have its offsets stored
            # The store is still locked: the writer must give up, not retry until the lock goes. It may be
            # in a backoff pause (up to 0.8 s here) when close() starts its 1 s join, so allow some slack.
            thread = writer._thread
            assert thread is not None
            wait_until(lambda: not thread.is_alive(), 10, interval_s=0.05, message="the writer thread ended")
            assert "giving up on marks" in caplog.text
            locked.release()  # only now: a writer still retrying would commit the marks at once
            check = SQLiteStore(locked.path, service=service)
            try:
                assert check.seen(service, ["a", "b"]) == set()
            finally:
                check.close()
        finally:
            locked.release()  # lets a writer that kept retrying finish, so no thread outlives the test
            writer.close(timeout_s=10)


def test_reopen_gives_an_independent_connection_to_the_same_store(make_store: Callable[..., IdempotencyStore],
                                                                  service: str) -> None:
    store = make_store(service, retention=timedelta(days=3))  # not the default: reopen must carry it over
    other = store.reopen()
    try:
        assert other is not store
        other.mark_processed(service, ["x"])
        assert store.seen(service, ["x"]) == {"x"}
        assert other.retention == timedelta(days=3)  # type: ignore[attr-defined]
    finally:
        other.close()
    assert store.seen(service, ["x"]) == {"x"}  # closing the other connection leaves this one working


def test_submit_gives_up_when_told_while_the_store_takes_no_marks(tmp_path: Path, service: str) -> None:
    give_up = threading.Event()
    with locked_store(tmp_path, service) as locked:
        # submit_timeout_s far above the bound below: only give_up can make submit() raise in time.
        writer = MarkWriter(locked.store, service, linger_s=0.01, max_pending=1, submit_timeout_s=60)
        try:
            writer.submit(["a"], _offsets(1))
            give_up.set()  # the worker was asked to stop
            started = time.monotonic()
            with pytest.raises(InfrastructureError, match="takes no marks"):
                writer.submit(["b"], _offsets(2), give_up=give_up)
            assert time.monotonic() - started < 30
            assert writer.in_flight == {"a"}  # "b" was not queued: its batch will be re-run or redelivered
        finally:
            locked.release()
            writer.close()


def test_a_store_without_reopen_is_marked_inline(tmp_path: Path, service: str) -> None:
    class OwnStore:
        """A user's store that offers no second connection."""

        def __init__(self) -> None:
            self.inner = SQLiteStore(tmp_path / "own.sqlite3", service=service)

        def mark_processed(self, svc: str, ids: list[str]) -> None:
            self.inner.mark_processed(svc, ids)

        def maybe_expire(self) -> int:
            return 0

    own = OwnStore()
    writer = MarkWriter(own, service)  # type: ignore[arg-type]
    writer.submit(["a"], _offsets(1))
    assert [o[0].offset for o in writer.completed()] == [1]
    assert own.inner.seen(service, ["a"]) == {"a"}
    writer.close()
    own.inner.close()


def test_a_write_lock_held_too_long_is_an_infrastructure_error(tmp_path: Path, service: str) -> None:
    with locked_store(tmp_path, service) as locked, pytest.raises(InfrastructureError, match="busy"), \
            locked.store.transaction(service):
        pass
