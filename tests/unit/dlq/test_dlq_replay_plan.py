"""Replay without a broker: header rewriting, the token bucket, planning and the audit record."""

from __future__ import annotations

import pytest

from choreo.cli.dlq import _parse_position
from choreo.errors import ConfigError
from choreo.retry.dlq import DeadLetter, DeadLetterFilter
from choreo.retry.replay import (
    ReplayOptions,
    ReplayRun,
    TokenBucket,
    from_ranges,
    plan_replay,
    replay_headers,
    to_ranges,
)


def dead(offset: int, *, partition: int = 0, reason: str = "permanent-error", replays: int | None = None,
         key: str = "k") -> DeadLetter:
    headers = [("ce_id", f"id-{offset}".encode()), ("ce_type", b"io.choreo.test.Ping"),
               ("correlation-id", b"job"), ("dlq-reason", reason.encode()), ("dlq-error-type", b"Boom"),
               ("dlq-last-failure", str(1000 + offset).encode())]
    if replays is not None:
        headers.append(("dlq-replay-count", str(replays).encode()))
    return DeadLetter("s.dlq", partition, offset, key.encode(), b"v", tuple(headers))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# -- headers --------------------------------------------------------------------------------------

def test_replay_headers_reset_the_attempt_budget_and_count_the_replay() -> None:
    record = DeadLetter("s.dlq", 2, 9, b"k", b"v", (
        ("ce_id", b"e1"), ("ce_type", b"T"), ("correlation-id", b"job"), ("traceparent", b"00-ab"),
        ("retry-attempt", b"3"), ("retry-not-before", b"5"),
        ("retry-original-topic", b"pings"), ("retry-original-partition", b"1"), ("retry-original-offset", b"4"),
        ("dlq-reason", b"retries-exhausted"), ("dlq-error-type", b"E"), ("dlq-error-message", b"m"),
        ("dlq-traceback", b"tb"), ("dlq-attempts", b"3"), ("dlq-first-failure", b"1"),
        ("dlq-last-failure", b"2"), ("dlq-service", b"s"), ("dlq-replayed-at", b"0"), ("dlq-replay-count", b"1"),
    ))
    headers = replay_headers(record, now_ms=12345)
    assert headers == [
        ("ce_id", b"e1"), ("ce_type", b"T"), ("correlation-id", b"job"), ("traceparent", b"00-ab"),
        ("retry-original-topic", b"pings"), ("retry-original-partition", b"1"), ("retry-original-offset", b"4"),
        ("retry-attempt", b"1"), ("retry-not-before", b"12345"),
        ("dlq-replayed-at", b"12345"), ("dlq-replay-count", b"2"),
    ]


def test_first_replay_counts_one() -> None:
    assert dict(replay_headers(dead(1), now_ms=7))["dlq-replay-count"] == b"1"


# -- token bucket ---------------------------------------------------------------------------------

def test_token_bucket_spaces_acquisitions_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(20, clock=clock, sleep=clock.sleep)
    for _ in range(20):
        bucket.acquire()
    assert clock.now - 100.0 == pytest.approx(19 / 20)  # the first is free, then one every 50 ms


def test_token_bucket_refills_while_idle_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        bucket.acquire()
    assert clock.slept == []
    clock.now += 60  # a long pause refills only up to the burst
    for _ in range(3):
        bucket.acquire()
    assert clock.slept == []
    bucket.acquire()
    assert clock.slept == [pytest.approx(0.1)]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (5, 0.5)])
def test_token_bucket_rejects_nonsense(rate: float, burst: float) -> None:
    with pytest.raises(ConfigError):
        TokenBucket(rate, burst)


# -- planning -------------------------------------------------------------------------------------

def test_plan_skips_already_replayed_poison_and_too_often_replayed() -> None:
    records = [dead(0), dead(1, reason="poison"), dead(2, replays=3), dead(3, replays=2), dead(4)]
    plan = plan_replay(records, DeadLetterFilter(), ReplayOptions(), replayed_before={(0, 4)})
    assert [d.offset for d in plan.selected] == [0, 3]
    assert [(s.dead.offset, s.reason) for s in plan.skipped] == [
        (1, "poison"), (2, "max-replays"), (4, "already-replayed")]
    assert plan.matched == 5
    assert plan.skipped_by_reason() == {"poison": 1, "max-replays": 1, "already-replayed": 1}


def test_plan_options_lift_the_skips() -> None:
    records = [dead(0), dead(1, reason="poison"), dead(2, replays=3)]
    options = ReplayOptions(include_poison=True, max_replays=4, again=True)
    plan = plan_replay(records, DeadLetterFilter(), options, replayed_before={(0, 0)})
    assert [d.offset for d in plan.selected] == [0, 1, 2] and plan.skipped == []


def test_plan_limit_counts_only_what_is_replayed() -> None:
    records = [dead(i, reason="poison" if i < 2 else "permanent-error") for i in range(10)]
    plan = plan_replay(records, DeadLetterFilter(), ReplayOptions(limit=3))
    assert [d.offset for d in plan.selected] == [2, 3, 4] and len(plan.skipped) == 2


def test_plan_applies_the_filter_first() -> None:
    records = [dead(0, key="a"), dead(1, key="b"), dead(2, key="a")]
    plan = plan_replay(records, DeadLetterFilter(key="a"), ReplayOptions())
    assert [d.offset for d in plan.selected] == [0, 2] and plan.matched == 2


@pytest.mark.parametrize("options", [{"limit": 0}, {"max_replays": 0}, {"rate": 0}, {"rate": -2.0}])
def test_bad_options_are_config_errors(options: dict) -> None:
    with pytest.raises(ConfigError):
        ReplayOptions(**options)


# -- the audit record -----------------------------------------------------------------------------

def test_offsets_are_stored_as_ranges() -> None:
    assert to_ranges([7, 1, 2, 3, 3, 9, 8]) == [[1, 3], [7, 9]]
    assert from_ranges([[1, 3], [7, 9]]) == [1, 2, 3, 7, 8, 9]
    assert to_ranges([]) == []


def test_replay_run_round_trips_through_json() -> None:
    run = ReplayRun(run_id="r1", service="s", started_ms=1, finished_ms=2, who="me@host", dry_run=False,
                    filters={"key": "a"}, options={"limit": None}, matched=3, selected=2, replayed=2,
                    skipped={"poison": 1}, outcome="ok", offsets={"0": [[4, 5]], "3": [[1, 1]]})
    again = ReplayRun.from_json(run.to_json())
    assert again == run
    assert again.positions() == {(0, 4), (0, 5), (3, 1)}


# -- command-line positions -----------------------------------------------------------------------

def test_positions_parse_offset_or_partition_colon_offset() -> None:
    assert _parse_position("7", None) == (None, 7)
    assert _parse_position("7", 2) == (2, 7)
    assert _parse_position("2:7", None) == (2, 7)
    for bad in ("x", "-1", "1:y", "1:2:3", ""):
        with pytest.raises(ConfigError, match="bad offset"):
            _parse_position(bad, None)
    with pytest.raises(ConfigError, match="--partition is 3"):
        _parse_position("2:7", 3)
