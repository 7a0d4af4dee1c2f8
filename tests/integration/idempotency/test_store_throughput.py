"""10,000 ids marked and looked up in batches of 500: correct, and the rate is printed (never asserted)."""

from __future__ import annotations

import time

from choreo.idempotency import IdempotencyStore

BATCH = 500
TOTAL = 10_000


def test_ten_thousand_ids_in_batches(store: IdempotencyStore, service: str, backend: str) -> None:
    ids = [f"evt-{n:06d}" for n in range(TOTAL)]
    batches = [ids[i : i + BATCH] for i in range(0, TOTAL, BATCH)]

    started = time.perf_counter()
    for batch in batches:
        store.mark_processed(service, batch)
    marking = time.perf_counter() - started

    started = time.perf_counter()
    found = [store.seen(service, batch) for batch in batches]
    looking = time.perf_counter() - started

    assert set().union(*found) == set(ids)
    assert all(len(hits) == BATCH for hits in found)
    unknown = [f"new-{n:06d}" for n in range(BATCH)]
    assert store.seen(service, unknown + ids[:BATCH]) == set(ids[:BATCH])
    print(
        f"\n{backend}: batch {BATCH}: {TOTAL / marking:,.0f} marks/s, {TOTAL / looking:,.0f} lookups/s"
        f" ({marking * 1000:.0f} ms marking, {looking * 1000:.0f} ms looking up {TOTAL} ids)"
    )
