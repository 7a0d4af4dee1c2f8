"""The same behaviour from both stores: marks, the inbox transaction, the outbox, expiry, isolation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from choreo.idempotency import DuplicateEventError, IdempotencyStore, OutboxRecord, StoreTransaction

if TYPE_CHECKING:  # the fixture's class; never imported at run time (several conftest modules exist)
    from conftest import Clock


def sql(tx: StoreTransaction, statement: str) -> str:
    """User SQL written with ``?`` placeholders, in the transaction's dialect."""
    return statement.replace("?", "%s") if tx.dialect == "postgresql" else statement


def create_state(tx: StoreTransaction, table: str) -> None:
    tx.connection.execute(f"CREATE TABLE IF NOT EXISTS {table} (order_id TEXT PRIMARY KEY, status TEXT)")


def state_rows(store: IdempotencyStore, table: str) -> list[tuple[str, str]]:
    """Rows of the handler's table as seen from a fresh transaction ([] when the table does not exist)."""
    with store.transaction("reader") as tx:
        if tx.dialect == "sqlite":
            exists = tx.connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
        else:
            exists = tx.connection.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
        if not exists:
            return []
        return [tuple(row) for row in tx.connection.execute(f"SELECT order_id, status FROM {table}")]


def outputs_for(event_id: str, count: int = 2) -> list[OutboxRecord]:
    return [
        OutboxRecord(
            topic="payments",
            key=None if n % 2 else f"order-{event_id}".encode(),
            value=b"\x00\x00\x00\x00\x07" + bytes(range(256)) + str(n).encode(),
            headers=[("ce_id", f"{event_id}-out-{n}".encode()), ("bin", b"\xff\x00\xfe"), ("empty", b""),
                     ("nothing", None)],
            event_id=f"{event_id}-out-{n}",
        )
        for n in range(count)
    ]


def test_seen_returns_the_marked_subset_of_a_batch(store: IdempotencyStore, service: str) -> None:
    assert store.seen(service, ["a", "b", "c"]) == set()
    store.mark_processed(service, ["a", "c"])
    assert store.seen(service, ["a", "b", "c", "d"]) == {"a", "c"}
    assert store.seen(service, iter(["c", "c"])) == {"c"}  # any iterable, duplicates tolerated


def test_empty_batches_are_fine(store: IdempotencyStore, service: str) -> None:
    store.mark_processed(service, [])
    store.outbox_sent(service, [])
    assert store.seen(service, []) == set()
    assert store.pending_outbox(service, []) == {}


def test_marking_twice_is_a_no_op_and_keeps_the_first_time(
    store: IdempotencyStore, service: str, clock: Clock
) -> None:
    store.mark_processed(service, ["a", "a", "b"])
    clock.advance(hours=2)
    store.mark_processed(service, ["a", "b", "c"])
    assert store.seen(service, ["a", "b", "c"]) == {"a", "b", "c"}
    # Only the first marks are older than an hour: re-marking did not refresh them.
    assert store.expire(service, clock() - timedelta(hours=1)) == 2
    assert store.seen(service, ["a", "b", "c"]) == {"c"}


def test_transaction_commits_state_mark_and_outbox_together(
    store: IdempotencyStore, service: str, state_table: str
) -> None:
    outputs = outputs_for("e1")
    with store.transaction(service) as tx:
        assert tx.dialect == store.dialect
        create_state(tx, state_table)
        tx.connection.execute(sql(tx, f"INSERT INTO {state_table} VALUES (?, ?)"), ("o-1", "paid"))
        tx.record("e1", outputs)
    assert state_rows(store, state_table) == [("o-1", "paid")]
    assert store.seen(service, ["e1"]) == {"e1"}
    assert store.pending_outbox(service, ["e1"]) == {"e1": outputs}


def test_exception_in_transaction_rolls_back_state_mark_and_outbox(
    store: IdempotencyStore, service: str, state_table: str
) -> None:
    with pytest.raises(ZeroDivisionError):
        with store.transaction(service) as tx:
            create_state(tx, state_table)  # even the DDL is undone
            tx.connection.execute(sql(tx, f"INSERT INTO {state_table} VALUES (?, ?)"), ("o-1", "paid"))
            tx.record("e1", outputs_for("e1"))
            raise ZeroDivisionError("the handler failed")
    assert state_rows(store, state_table) == []
    assert store.seen(service, ["e1"]) == set()
    assert store.pending_outbox(service, ["e1"]) == {}
    # The store is usable afterwards.
    with store.transaction(service) as tx:
        tx.record("e1")
    assert store.seen(service, ["e1"]) == {"e1"}


def test_recording_an_already_processed_event_raises_and_undoes_the_state_change(
    make_store: Callable[..., IdempotencyStore], service: str, state_table: str
) -> None:
    winner, loser = make_store(service), make_store(service)  # two consumers after a rebalance
    with winner.transaction(service) as tx:
        create_state(tx, state_table)
        tx.record("e1", outputs_for("e1", 1))
    with pytest.raises(DuplicateEventError) as raised:
        with loser.transaction(service) as tx:
            tx.connection.execute(sql(tx, f"INSERT INTO {state_table} VALUES (?, ?)"), ("o-1", "paid twice"))
            tx.record("e1", outputs_for("e1", 3))
    assert raised.value.event_id == "e1"
    assert state_rows(loser, state_table) == []
    assert len(loser.pending_outbox(service, ["e1"])["e1"]) == 1


def test_a_handler_may_not_commit_the_store_transaction(store: IdempotencyStore, service: str) -> None:
    with pytest.raises(Exception, match="commit"):
        with store.transaction(service) as tx:
            tx.connection.commit()
            tx.record("e1")
    assert store.seen(service, ["e1"]) == set()


def test_pending_outbox_returns_unsent_outputs_in_order_until_sent(
    store: IdempotencyStore, service: str
) -> None:
    with store.transaction(service) as tx:
        tx.record("e1", outputs_for("e1", 3))
        tx.record("e2", outputs_for("e2", 2))
        tx.record("e3", [])  # processed, emitted nothing
    pending = store.pending_outbox(service, ["e3", "e2", "e1", "unknown"])
    assert list(pending) == ["e2", "e1"]  # request order; inputs without outputs are left out
    assert pending["e1"] == outputs_for("e1", 3)
    assert pending["e2"] == outputs_for("e2", 2)
    first = pending["e1"][0]
    assert isinstance(first.value, bytes) and first.value.startswith(b"\x00\x00\x00\x00\x07")
    assert first.headers == [
        ("ce_id", b"e1-out-0"), ("bin", b"\xff\x00\xfe"), ("empty", b""), ("nothing", None)
    ]

    store.outbox_sent(service, ["e1"])  # by input id: all of e1's outputs
    assert store.pending_outbox(service, ["e1", "e2"]) == {"e2": outputs_for("e2", 2)}
    store.outbox_sent(service, ["e2-out-0"])  # by output id: just that one
    assert store.pending_outbox(service, ["e2"]) == {"e2": outputs_for("e2", 2)[1:]}
    store.outbox_sent(service, ["e2-out-1"])
    assert store.pending_outbox(service, ["e1", "e2"]) == {}
    assert store.seen(service, ["e1", "e2", "e3"]) == {"e1", "e2", "e3"}  # sending does not unmark


def test_expire_removes_old_marks_and_outbox_rows_only(
    store: IdempotencyStore, service: str, clock: Clock
) -> None:
    store.mark_processed(service, ["old-1", "old-2"])
    with store.transaction(service) as tx:
        tx.record("old-3", outputs_for("old-3", 1))
    clock.advance(days=8)
    store.mark_processed(service, ["new-1"])
    with store.transaction(service) as tx:
        tx.record("new-2", outputs_for("new-2", 1))

    assert store.expire(service, clock() - timedelta(days=7)) == 3
    assert store.seen(service, ["old-1", "old-2", "old-3", "new-1", "new-2"]) == {"new-1", "new-2"}
    assert list(store.pending_outbox(service, ["old-3", "new-2"])) == ["new-2"]
    assert store.expire(service, clock() - timedelta(days=7)) == 0


def test_expire_wants_an_aware_datetime(store: IdempotencyStore, service: str, clock: Clock) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.expire(service, clock().replace(tzinfo=None))


def test_maybe_expire_deletes_at_most_once_per_interval(
    make_store: Callable[..., IdempotencyStore], service: str, clock: Clock
) -> None:
    store = make_store(service, retention=timedelta(days=1), expire_interval=3600)
    store.mark_processed(service, ["a"])
    clock.advance(days=2)
    assert store.maybe_expire() == 1  # the first call runs
    store.mark_processed(service, ["b"])
    clock.advance(days=2)
    assert store.maybe_expire() == 0  # within the interval: skipped, "b" stays
    assert store.seen(service, ["b"]) == {"b"}
    assert store.maybe_expire(service + "_b") == 0  # another service has its own schedule


def test_services_sharing_a_database_do_not_see_each_other(
    make_store: Callable[..., IdempotencyStore], service: str, clock: Clock
) -> None:
    other = service + "_b"
    mine, theirs = make_store(service), make_store(other)
    mine.mark_processed(service, ["shared-id", "mine-only"])
    with theirs.transaction(other) as tx:
        tx.record("shared-id", outputs_for("shared-id", 1))  # same id, other service: no duplicate
    assert mine.seen(service, ["shared-id", "mine-only"]) == {"shared-id", "mine-only"}
    assert theirs.seen(other, ["shared-id", "mine-only"]) == {"shared-id"}
    assert mine.pending_outbox(service, ["shared-id"]) == {}
    mine.outbox_sent(service, ["shared-id"])
    assert list(theirs.pending_outbox(other, ["shared-id"])) == ["shared-id"]
    clock.advance(days=30)
    assert mine.expire(service, clock()) == 2
    assert theirs.seen(other, ["shared-id"]) == {"shared-id"}


def test_marks_survive_reopening(make_store: Callable[..., IdempotencyStore], service: str) -> None:
    first = make_store(service)
    first.mark_processed(service, ["a"])
    first.close()
    first.close()  # closing twice is harmless
    assert make_store(service).seen(service, ["a", "b"]) == {"a"}


def test_store_calls_inside_a_transaction_join_it(store: IdempotencyStore, service: str) -> None:
    with pytest.raises(ZeroDivisionError):
        with store.transaction(service) as tx:
            store.mark_processed(service, ["batch-mark"])
            tx.record("e1")
            assert store.seen(service, ["e1", "batch-mark"]) == {"e1", "batch-mark"}
            raise ZeroDivisionError("the handler failed")
    assert store.seen(service, ["e1", "batch-mark"]) == set()
    with store.transaction(service) as tx:
        store.mark_processed(service, ["batch-mark"])
        tx.record("e1")
    assert store.seen(service, ["e1", "batch-mark"]) == {"e1", "batch-mark"}


def test_read_sees_committed_rows_and_waits_for_no_writer(make_store: Callable[..., IdempotencyStore],
                                                         store: IdempotencyStore, service: str) -> None:
    table = f"read_{service}"
    with store.transaction(service) as tx:
        create_state(tx, table)
        tx.connection.execute(sql(tx, f"INSERT INTO {table} VALUES (?, ?)"), ("o-1", "placed"))
    writer = store.reopen()
    try:
        with writer.transaction(service) as tx:  # holds the write lock (SQLite) while we read
            tx.connection.execute(sql(tx, f"UPDATE {table} SET status = ? WHERE order_id = ?"), ("paid", "o-1"))
            with store.read(service) as view:
                assert view.dialect == tx.dialect
                rows = view.connection.execute(f"SELECT order_id, status FROM {table}").fetchall()
            assert [tuple(r) for r in rows] == [("o-1", "placed")]  # not the uncommitted update
    finally:
        writer.close()
