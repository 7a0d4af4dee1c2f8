"""Ordered retries per key, durable part: blocked keys and the records parked behind them, on both stores."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest

from choreo.idempotency import IdempotencyStore, OutboxRecord

if TYPE_CHECKING:  # the fixture's class; never imported at run time (several conftest modules exist)
    from conftest import Clock


@pytest.fixture(autouse=True)
def _remove_parking_rows(
    backend: str,
    make_store: Callable[..., IdempotencyStore],
    unique_name: Callable[[str], str],
    request: pytest.FixtureRequest,
) -> Iterator[None]:
    """The shared conftest cleans the inbox and outbox; this test's parking rows go here (PostgreSQL)."""
    yield
    if backend != "postgresql":
        return  # the SQLite file lives in tmp_path
    with psycopg.connect(request.getfixturevalue("pg_url"), autocommit=True) as conn:
        for table in ("choreo_parked", "choreo_blocked_keys"):
            conn.execute(f"DELETE FROM {table} WHERE service LIKE %s", (unique_name("svc") + "%",))


def record(event_id: str, key: str = "order-1") -> OutboxRecord:
    """An incoming record as the consumer saw it (raw key = the entity id's bytes)."""
    return OutboxRecord(
        topic="orders",
        key=key.encode(),
        value=f"payload of {event_id}".encode(),
        headers=[("ce_id", event_id.encode())],
        event_id=event_id,
    )


def ids(records: list[OutboxRecord]) -> list[str]:
    return [r.event_id for r in records]


def park(store: IdempotencyStore, service: str, *pairs: tuple[str, str]) -> None:
    """Park ``(key, event_id)`` pairs, nothing else."""
    parked = [(key, record(event_id, key)) for key, event_id in pairs]
    store.apply_parking(service, blocks={}, parked=parked, released=[])


def test_an_empty_store_blocks_nothing_and_parks_nothing(store: IdempotencyStore, service: str) -> None:
    assert store.blockers(service, ["order-1", "order-2"]) == {}
    assert store.blockers(service, []) == {}
    assert store.parked(service, "order-1") == []
    store.apply_parking(service, blocks={}, parked=[], released=[])  # empty: a no-op
    store.apply_parking(service, blocks={}, parked=[], released=["never-parked"])
    store.apply_parking(service, blocks={"never-blocked": None}, parked=[], released=[])
    assert store.blockers(service, ["order-1", "never-blocked"]) == {}


def test_block_and_unblock_round_trip(store: IdempotencyStore, service: str) -> None:
    store.apply_parking(service, blocks={"order-1": "e1", "order-2": "e7"}, parked=[], released=[])
    assert store.blockers(service, ["order-1", "order-2", "order-3"]) == {"order-1": "e1", "order-2": "e7"}
    assert store.blockers(service, iter(["order-2", "order-2"])) == {"order-2": "e7"}  # any iterable
    store.apply_parking(service, blocks={"order-1": None}, parked=[], released=[])
    assert store.blockers(service, ["order-1", "order-2"]) == {"order-2": "e7"}
    store.apply_parking(service, blocks={"order-2": None, "order-9": None}, parked=[], released=[])
    assert store.blockers(service, ["order-1", "order-2"]) == {}


def test_a_new_blocker_replaces_the_old_one(store: IdempotencyStore, service: str, clock: Clock) -> None:
    store.apply_parking(service, blocks={"order-1": "e1"}, parked=[], released=[])
    clock.advance(minutes=5)
    store.apply_parking(service, blocks={"order-1": "e2", "order-2": "e3"}, parked=[], released=[])
    assert store.blockers(service, ["order-1", "order-2"]) == {"order-1": "e2", "order-2": "e3"}
    store.apply_parking(service, blocks={"order-1": "e2"}, parked=[], released=[])  # same again: harmless
    assert store.blockers(service, ["order-1"]) == {"order-1": "e2"}


def test_blockers_is_one_batch_of_any_size(store: IdempotencyStore, service: str) -> None:
    blocks: dict[str, str | None] = {f"k{n:04d}": f"e{n}" for n in range(1200)}
    store.apply_parking(service, blocks=blocks, parked=[], released=[])
    wanted = [f"k{n:04d}" for n in range(0, 2400, 2)]  # half of them exist
    assert store.blockers(service, wanted) == {f"k{n:04d}": f"e{n}" for n in range(0, 1200, 2)}
    store.apply_parking(service, blocks=dict.fromkeys(blocks), parked=[], released=[])
    assert store.blockers(service, list(blocks)) == {}


def test_parked_records_keep_arrival_order_across_calls_and_keys(
    store: IdempotencyStore, service: str
) -> None:
    park(store, service, ("A", "a1"), ("B", "b1"), ("A", "a2"))
    park(store, service, ("B", "b2"))
    park(store, service, ("A", "a3"), ("B", "b3"), ("B", "b4"), ("A", "a4"))
    # Ids that sort differently from arrival order: the order is the arrival order, not the ids'.
    park(store, service, ("A", "0-last"), ("B", "0-last-b"))
    assert ids(store.parked(service, "A")) == ["a1", "a2", "a3", "a4", "0-last"]
    assert ids(store.parked(service, "B")) == ["b1", "b2", "b3", "b4", "0-last-b"]
    assert store.parked(service, "C") == []


def test_arrival_order_holds_across_connections(
    make_store: Callable[..., IdempotencyStore], service: str
) -> None:
    first, second = make_store(service), make_store(service)
    for n in range(6):
        park(first if n % 2 else second, service, ("A", f"e{n}"))
    assert ids(first.parked(service, "A")) == [f"e{n}" for n in range(6)]
    assert ids(second.parked(service, "A")) == [f"e{n}" for n in range(6)]


def test_parking_the_same_event_twice_keeps_the_first(store: IdempotencyStore, service: str) -> None:
    park(store, service, ("A", "a1"), ("A", "a2"))
    # A redelivery after a crash parks a1 again (even with different bytes or another key): ignored.
    changed = OutboxRecord("orders", b"A", b"other bytes", [], "a1")
    store.apply_parking(service, blocks={}, parked=[("A", changed), ("B", changed)], released=[])
    park(store, service, ("A", "a3"), ("A", "a3"))  # a duplicate within one call too
    assert ids(store.parked(service, "A")) == ["a1", "a2", "a3"]
    assert store.parked(service, "A")[0] == record("a1", "A")
    assert store.parked(service, "B") == []


def test_release_deletes_exactly_the_named_records(store: IdempotencyStore, service: str) -> None:
    park(store, service, ("A", "a1"), ("A", "a2"), ("A", "a3"), ("B", "b1"), ("B", "b2"))
    store.apply_parking(service, blocks={}, parked=[], released=["a1", "b2", "unknown"])
    assert ids(store.parked(service, "A")) == ["a2", "a3"]
    assert ids(store.parked(service, "B")) == ["b1"]
    store.apply_parking(service, blocks={}, parked=[], released=["a1"])  # released twice: harmless
    assert ids(store.parked(service, "A")) == ["a2", "a3"]


def test_release_of_a_large_batch_keeps_the_rest_in_order(store: IdempotencyStore, service: str) -> None:
    park(store, service, *[("A", f"e{n:04d}") for n in range(1200)])
    store.apply_parking(service, blocks={}, parked=[], released=[f"e{n:04d}" for n in range(1, 1200, 2)])
    assert ids(store.parked(service, "A")) == [f"e{n:04d}" for n in range(0, 1200, 2)]


def test_one_call_parks_then_releases_then_blocks(store: IdempotencyStore, service: str) -> None:
    park(store, service, ("A", "a1"))
    store.apply_parking(service, blocks={"A": "a0"}, parked=[], released=[])
    # The blocker a0 succeeded: release a1 (it becomes the new head, so it blocks A), park a2 behind it.
    store.apply_parking(service, blocks={"A": "a1"}, parked=[("A", record("a2", "A"))], released=["a1"])
    assert ids(store.parked(service, "A")) == ["a2"]
    assert store.blockers(service, ["A"]) == {"A": "a1"}
    # Parked and released in the same call: inserted first, then deleted.
    store.apply_parking(service, blocks={"A": None}, parked=[("A", record("a3", "A"))], released=["a3"])
    assert ids(store.parked(service, "A")) == ["a2"]
    assert store.blockers(service, ["A"]) == {}


def test_bytes_and_headers_round_trip_intact(store: IdempotencyStore, service: str) -> None:
    records = [
        OutboxRecord(
            topic="orders.v1",
            key=b"\x00\xffraw key\x80",
            value=b"\x00\x00\x00\x00\x07" + bytes(range(256)),
            headers=[("ce_id", b"p1"), ("bin", b"\xff\x00\xfe"), ("empty", b""), ("nothing", None),
                     ("ce_id", b"repeated name")],
            event_id="p1",
        ),
        OutboxRecord(topic="orders", key=None, value=b"", headers=[], event_id="p2"),  # a null Kafka key
    ]
    store.apply_parking(service, blocks={}, parked=[("entity-é", r) for r in records], released=[])
    assert store.parked(service, "entity-é") == records
    assert all(isinstance(r.value, bytes) and (r.key is None or isinstance(r.key, bytes))
               for r in store.parked(service, "entity-é"))


def test_services_do_not_see_each_others_parking(
    make_store: Callable[..., IdempotencyStore], service: str
) -> None:
    other = service + "_b"
    mine, theirs = make_store(service), make_store(other)
    mine.apply_parking(service, blocks={"A": "e1"}, parked=[("A", record("e2", "A"))], released=[])
    assert theirs.blockers(other, ["A"]) == {}
    assert theirs.parked(other, "A") == []
    # The same key and event ids in the other service are its own state.
    theirs.apply_parking(other, blocks={"A": "e9"}, parked=[("A", record("e2", "A"))], released=[])
    assert ids(theirs.parked(other, "A")) == ["e2"]
    theirs.apply_parking(other, blocks={"A": None}, parked=[], released=["e2"])
    assert mine.blockers(service, ["A"]) == {"A": "e1"}
    assert ids(mine.parked(service, "A")) == ["e2"]
    assert theirs.blockers(other, ["A"]) == {} and theirs.parked(other, "A") == []


def test_expire_leaves_parking_state_alone(store: IdempotencyStore, service: str, clock: Clock) -> None:
    store.mark_processed(service, ["old"])
    store.apply_parking(service, blocks={"A": "e1"}, parked=[("A", record("e2", "A"))], released=[])
    clock.advance(days=365)
    assert store.expire(service, clock()) == 1
    store.maybe_expire(service)
    assert store.blockers(service, ["A"]) == {"A": "e1"}
    assert ids(store.parked(service, "A")) == ["e2"]


def test_parking_survives_reopening(make_store: Callable[..., IdempotencyStore], service: str) -> None:
    first = make_store(service)
    first.apply_parking(service, blocks={"A": "e1"}, parked=[("A", record("e2", "A"))], released=[])
    first.close()
    second = make_store(service)
    assert second.blockers(service, ["A"]) == {"A": "e1"}
    assert second.parked(service, "A") == [record("e2", "A")]
    park(second, service, ("A", "e3"))  # the order continues after the reopen
    assert ids(second.parked(service, "A")) == ["e2", "e3"]


def test_a_failure_inside_a_transaction_leaves_nothing_behind(store: IdempotencyStore, service: str) -> None:
    park(store, service, ("A", "kept"))
    with pytest.raises(ZeroDivisionError):
        with store.transaction(service) as tx:
            store.apply_parking(
                service, blocks={"A": "e1", "B": "e5"}, parked=[("A", record("e2", "A"))], released=["kept"]
            )
            tx.record("e1")
            # Inside the transaction its own changes are visible...
            assert store.blockers(service, ["A", "B"]) == {"A": "e1", "B": "e5"}
            assert ids(store.parked(service, "A")) == ["e2"]
            raise ZeroDivisionError("the handler failed")
    # ...and all of them are gone with the rollback, the mark included.
    assert store.blockers(service, ["A", "B"]) == {}
    assert ids(store.parked(service, "A")) == ["kept"]
    assert store.seen(service, ["e1"]) == set()


def test_apply_parking_commits_with_the_transaction_it_joins(store: IdempotencyStore, service: str) -> None:
    with store.transaction(service) as tx:
        store.apply_parking(service, blocks={"A": "e1"}, parked=[("A", record("e2", "A"))], released=[])
        tx.record("e1")
    assert store.blockers(service, ["A"]) == {"A": "e1"}
    assert ids(store.parked(service, "A")) == ["e2"]
    assert store.seen(service, ["e1"]) == {"e1"}


def test_a_failing_apply_parking_is_all_or_nothing(store: IdempotencyStore, service: str) -> None:
    park(store, service, ("A", "kept"))
    broken = OutboxRecord("orders", b"A", None, [], "e3")  # type: ignore[arg-type]  # NOT NULL value
    with pytest.raises(Exception):  # noqa: B017 - the driver's own IntegrityError, either backend
        store.apply_parking(
            service,
            blocks={"A": "e1"},
            parked=[("A", record("e2", "A")), ("A", broken)],
            released=["kept"],
        )
    assert store.blockers(service, ["A"]) == {}
    assert ids(store.parked(service, "A")) == ["kept"]
    park(store, service, ("A", "e4"))  # the store is still usable
    assert ids(store.parked(service, "A")) == ["kept", "e4"]


def test_stranded_names_keys_with_parked_records_and_no_blocker(store: IdempotencyStore, service: str) -> None:
    store.apply_parking(service, blocks={"order-1": "e0", "order-2": "f0"},
                        parked=[("order-1", record("e1")), ("order-2", record("f1", "order-2"))], released=[])
    assert store.stranded(service, ["order-1", "order-2", "order-3"]) == []
    # Another member unblocked order-1 without seeing e1 (the race): e1 would wait forever.
    store.apply_parking(service, blocks={"order-1": None}, parked=[], released=[])
    assert store.stranded(service, ["order-1", "order-2", "order-3"]) == ["order-1"]
    assert store.stranded(service, []) == []
    assert store.stranded("another-service", ["order-1"]) == []
