"""Joins against the real broker: parts in any order on two topics, duplicates, the time limit firing
with no further input, late parts, and a restart with a part pending."""

from __future__ import annotations

import time

from choreo import Context, Service
from choreo.idempotency import open_store
from choreo.join import Joined
from choreo.observability import metrics
from choreo.state import fetchall
from choreo.testing.processes import wait_until
from tests.integration.runtime.conftest import TimedEnv, running
from tests.support.kafka import headers_of, read_all, read_topic
from tests.support.timed import Both, Left, Missing, Right

WITHIN_S = 2.0


def _join_service(name: str, calls: list[str] | None = None, within_s: float = WITHIN_S) -> Service:
    """Both(x, y) once Left and Right of a key are in; Missing(have=...) when WITHIN_S passes first."""
    service = Service(name)

    def timed_out(parts: Joined, ctx: Context) -> Missing:
        left, right = parts
        return Missing(key=ctx.key or "", have=",".join(t.__name__ for t in (Left, Right) if parts[t] is not None))

    @service.join(Left, Right, within=within_s, on_timeout=timed_out)
    def both(parts: Joined, ctx: Context) -> Both:
        left, right = parts
        if calls is not None:
            calls.append(left.key)
        return Both(key=left.key, x=left.x, y=right.y)

    return service


def _publish(env: TimedEnv, *events: object) -> None:
    with env.publisher() as publisher:
        for event in events:
            publisher.publish(event)  # type: ignore[arg-type]


def _outputs(env: TimedEnv) -> dict[str, list[str]]:
    """Key → the output types emitted for it (short names), in order."""
    found: dict[str, list[str]] = {}
    for message in read_all(env.settings, env.out_topic):
        found.setdefault(message.key().decode(), []).append(headers_of(message)["ce_type"].rsplit(".", 1)[-1])
    return found


def test_parts_in_any_order_and_twice_join_once(timed_env: TimedEnv, unique) -> None:
    calls: list[str] = []
    with running(_join_service(unique("joins"), calls), timed_env) as worker:
        _publish(timed_env, Left(key="left-first", x=1), Right(key="right-first", y=2))
        wait_until(lambda: worker.handled >= 2, 30, message="first parts stored")  # then the other sides
        _publish(timed_env, Right(key="left-first", y=10), Left(key="right-first", x=20),
                 Left(key="twice", x=3), Left(key="twice", x=4))  # a second Left of "twice" is dropped
        _publish(timed_env, Right(key="twice", y=30), Right(key="twice", y=40))
        read_topic(timed_env.kafka_config, timed_env.out_topic, until=lambda got: len(got) >= 3)
        wait_until(lambda: worker.handled >= 8, 30, message="every part handled and settled")
    outputs = _outputs(timed_env)
    assert outputs == {"left-first": ["Both"], "right-first": ["Both"], "twice": ["Both"]}
    both = {m.key().decode(): m for m in read_all(timed_env.settings, timed_env.out_topic)}
    assert sorted(calls) == ["left-first", "right-first", "twice"]  # the handler ran once per key
    assert headers_of(both["twice"])["correlation-id"]


def test_the_limit_fires_on_the_wall_clock_and_late_parts_are_ignored(timed_env: TimedEnv, unique) -> None:
    name = unique("joins")
    late = metrics.JOIN_LATE_PARTS.labels(name, "_join_service.<locals>.both")
    with running(_join_service(name), timed_env):
        _publish(timed_env, Left(key="alone", x=1))
        started = time.monotonic()
        got = read_topic(timed_env.kafka_config, timed_env.out_topic, until=lambda got: len(got) >= 1, timeout_s=30)
        waited = time.monotonic() - started
        assert WITHIN_S - 0.3 <= waited < WITHIN_S + 1.5, f"the limit fired after {waited:.2f} s"
        before = late._value.get()
        _publish(timed_env, Right(key="alone", y=2))  # after the limit: ignored, counted
        wait_until(lambda: late._value.get() > before, 15, message="late part counted")
    assert _outputs(timed_env) == {"alone": ["Missing"]}
    assert headers_of(got[0])["ce_type"] == "io.choreo.test.Missing"
    missing = read_all(timed_env.settings, timed_env.out_topic)[0]
    assert b"Left" in missing.value()


def test_a_pending_part_survives_a_restart(timed_env: TimedEnv, unique) -> None:
    name, within_s = unique("joins"), 10.0  # longer than a stop and a group join (~3 s each on Tansu)
    with running(_join_service(name, within_s=within_s), timed_env) as worker:
        _publish(timed_env, Left(key="kept", x=5), Left(key="expires", x=6))
        wait_until(lambda: worker.handled >= 2, 30, message="parts stored")
        stored_at = time.monotonic()
    with running(_join_service(name, within_s=within_s), timed_env):  # the parts and limits are in the store
        assert time.monotonic() - stored_at < within_s, "restarted too slowly for this test's limit"
        _publish(timed_env, Right(key="kept", y=7))
        read_topic(timed_env.kafka_config, timed_env.out_topic, until=lambda got: len(got) >= 2, timeout_s=30)
    assert _outputs(timed_env) == {"kept": ["Both"], "expires": ["Missing"]}
    with open_store(timed_env.settings, name) as store, store.read(name) as view:  # kept's limit was cancelled
        assert fetchall(view, "SELECT key FROM choreo_timers WHERE service = ?", (name,)) == []


def test_joins_and_their_limits_on_postgresql(timed_env: TimedEnv, unique, pg_url: str) -> None:
    """The same join, with its parts, closed markers and timers in PostgreSQL instead of SQLite."""
    timed_env.settings = timed_env.settings.model_copy(update={"store_url": pg_url})
    with running(_join_service(unique("joins")), timed_env) as worker:
        _publish(timed_env, Right(key="pg-both", y=1), Left(key="pg-alone", x=2))
        _publish(timed_env, Left(key="pg-both", x=3), Left(key="pg-both", x=4))
        read_topic(timed_env.kafka_config, timed_env.out_topic, until=lambda got: len(got) >= 2, timeout_s=30)
        wait_until(lambda: worker.handled >= 5, 30, message="four parts and a limit handled and settled")
    assert _outputs(timed_env) == {"pg-both": ["Both"], "pg-alone": ["Missing"]}
