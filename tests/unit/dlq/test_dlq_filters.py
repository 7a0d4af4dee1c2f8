"""Dead-letter filters: time parsing (durations and ISO-8601) and what each field matches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from choreo.errors import ConfigError
from choreo.retry.dlq import DeadLetter, DeadLetterFilter, find, parse_time, select

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def dead(offset: int, *, key: str = "k", failed: datetime = NOW, partition: int = 0, **headers: str) -> DeadLetter:
    base = {"ce_id": f"id-{offset}", "ce_type": "io.choreo.test.Ping", "correlation-id": "job-1",
            "dlq-reason": "permanent-error", "dlq-error-type": "PermanentError",
            "dlq-last-failure": str(ms(failed))}
    base.update({name.replace("_", "-"): value for name, value in headers.items()})
    return DeadLetter("s.dlq", partition, offset, key.encode(), b"v",
                      tuple((k, v.encode()) for k, v in base.items()))


@pytest.mark.parametrize(("text", "back"), [
    ("1h", timedelta(hours=1)), ("30m", timedelta(minutes=30)), ("90s", timedelta(seconds=90)),
    ("2d", timedelta(days=2)), ("1w", timedelta(weeks=1)), ("1.5h", timedelta(minutes=90)),
    (" 10M ", timedelta(minutes=10)),
])
def test_durations_count_back_from_now(text: str, back: timedelta) -> None:
    assert parse_time(text, now=NOW) == ms(NOW - back)


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("2024-05-01T10:00:00.250+00:00", datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)),
])
def test_iso_times_with_a_zone(text: str, expected: datetime) -> None:
    assert parse_time(text) == ms(expected)


def test_naive_iso_times_and_dates_are_local_time() -> None:
    assert parse_time("2024-05-01T10:00") == ms(datetime(2024, 5, 1, 10).astimezone())
    assert parse_time("2024-05-01") == ms(datetime(2024, 5, 1).astimezone())


@pytest.mark.parametrize("text", ["yesterday", "1 hour", "-1h", "h", "2024-13-01", ""])
def test_bad_times_name_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="--since"):
        parse_time(text, option="--since")


def test_parse_rejects_an_empty_range() -> None:
    with pytest.raises(ConfigError, match="after --until"):
        DeadLetterFilter.parse(since="1h", until="2h", now=NOW)


def test_empty_filter_matches_everything() -> None:
    assert DeadLetterFilter().matches(dead(1))
    assert DeadLetterFilter().matches(DeadLetter("s.dlq", 0, 0, None, None, ()))


def test_each_field_must_match() -> None:
    record = dead(1, key="order-7")
    assert DeadLetterFilter(key="order-7").matches(record)
    assert not DeadLetterFilter(key="order-8").matches(record)
    assert DeadLetterFilter(correlation_id="job-1").matches(record)
    assert not DeadLetterFilter(correlation_id="job-2").matches(record)
    assert DeadLetterFilter(event_type="Ping").matches(record)
    assert DeadLetterFilter(event_type="io.choreo.test.Ping").matches(record)
    assert not DeadLetterFilter(event_type="Pong").matches(record)
    assert DeadLetterFilter(error_type="PermanentError").matches(record)
    assert not DeadLetterFilter(error_type="ValueError").matches(record)
    assert DeadLetterFilter(reason="permanent-error").matches(record)
    assert not DeadLetterFilter(reason="poison").matches(record)
    assert not DeadLetterFilter(key="order-7", error_type="ValueError").matches(record)


def test_time_bounds_are_inclusive_on_last_failure() -> None:
    record = dead(1, failed=NOW - timedelta(minutes=30))
    assert DeadLetterFilter.parse(since="1h", now=NOW).matches(record)
    assert not DeadLetterFilter.parse(since="10m", now=NOW).matches(record)
    assert DeadLetterFilter.parse(until="10m", now=NOW).matches(record)
    assert not DeadLetterFilter.parse(until="1h", now=NOW).matches(record)
    exact = ms(NOW - timedelta(minutes=30))
    assert DeadLetterFilter(since_ms=exact, until_ms=exact).matches(record)


def test_select_keeps_order_and_stops_at_the_limit() -> None:
    records = [dead(i, key="a" if i % 2 else "b") for i in range(10)]
    assert [d.offset for d in select(records, DeadLetterFilter(key="a"), limit=3)] == [1, 3, 5]


def test_find_by_offset_needs_a_partition_only_when_ambiguous() -> None:
    records = [dead(5, partition=0), dead(5, partition=3), dead(6, partition=3)]
    assert find(records, 6).partition == 3
    assert find(records, 5, partition=3).partition == 3
    with pytest.raises(ConfigError, match="partitions 0, 3: pass --partition"):
        find(records, 5)
    with pytest.raises(ConfigError, match="no dead letter at partition 1 offset 5"):
        find(records, 5, partition=1)


def test_dead_letter_header_views() -> None:
    record = dead(1, dlq_attempts="3", dlq_replay_count="2", retry_original_topic="pings",
                  retry_original_partition="4", retry_original_offset="17")
    assert (record.attempts, record.replay_count, record.original) == (3, 2, "pings[4]@17")
    assert record.event_id == "id-1" and record.error_type == "PermanentError" and not record.is_poison
    assert dead(2, dlq_replay_count="x").replay_count == 0  # unreadable counts as never replayed
