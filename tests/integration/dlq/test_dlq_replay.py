"""Replay against the real broker and registry: each dead letter is handled exactly once, reruns do nothing
new, a replayed event gets its full retry budget and comes back counted if it fails again."""

from __future__ import annotations

import time

import pytest

from choreo.retry.dlq import DeadLetterFilter
from choreo.retry.replay import ReplayOptions, read_history, replay
from choreo.testing.processes import wait_until
from tests.integration.dlq.helpers import Breakable, causations, wait_dead_letters, wait_outputs
from tests.integration.runtime.conftest import EchoEnv, running
from tests.support.echo import Ping
from tests.support.kafka import read_all


def test_replay_handles_every_dead_letter_once_and_reruns_add_nothing(echo_env: EchoEnv, unique) -> None:
    switch = Breakable()
    service = switch.service(unique("fixme"))
    settings = echo_env.settings
    with running(service, echo_env) as worker:
        with echo_env.publisher() as publisher:
            inputs = {publisher.publish(Ping(key=f"k{i}", seq=i)).event_id for i in range(20)}
        dead = wait_dead_letters(settings, service.name, 20)
        assert {d.event_id for d in dead} == inputs
        switch.all_broken = False  # the bug is fixed

        sent_at: list[float] = []  # time the sends, not the reads around them
        report = replay(settings, service.name, options=ReplayOptions(rate=20),
                        on_progress=lambda _: sent_at.append(time.monotonic()))
        elapsed = sent_at[-1] - sent_at[0]
        assert report.ok and len(report.replayed) == 20 and report.plan.skipped == []
        assert elapsed >= 0.9, f"--rate 20 sent 20 records in {elapsed:.2f}s"
        outputs = wait_outputs(echo_env, 20)
        assert sorted(causations(outputs)) == sorted(inputs)

        # The same range again: the audit trail knows these offsets, nothing is sent.
        second = replay(settings, service.name)
        assert second.ok and second.replayed == []
        assert second.plan.skipped_by_reason() == {"already-replayed": 20}

        # --again sends them, and the service's idempotency store drops every one.
        duplicates_before = worker.duplicates
        forced = replay(settings, service.name, options=ReplayOptions(again=True))
        assert len(forced.replayed) == 20
        wait_until(lambda: worker.duplicates >= duplicates_before + 20, 30, message="20 duplicates skipped")
        with echo_env.publisher() as publisher:
            sentinel = publisher.publish(Ping(key="sentinel", seq=99)).event_id
        wait_until(lambda: sentinel in causations(read_all(echo_env.settings, echo_env.out_topic)), 30,
                   message="the sentinel's output")
        assert sorted(causations(read_all(echo_env.settings, echo_env.out_topic))) == sorted(inputs | {sentinel})

    runs = read_history(settings, service.name)
    assert [(r.replayed, r.outcome, r.options["again"]) for r in runs] == [
        (20, "ok", False), (0, "ok", False), (20, "ok", True)]
    assert runs[0].offsets and runs[0].who and runs[0].options["rate"] == 20
    assert sum(hi - lo + 1 for ranges in runs[0].offsets.values() for lo, hi in ranges) == 20


@pytest.mark.parametrize("ordered", [False, True], ids=["unordered", "ordered-retries"])
def test_an_event_failing_again_returns_counted_and_max_replays_stops_it(echo_env: EchoEnv, unique,
                                                                          ordered: bool) -> None:
    switch = Breakable(all_broken=False, broken={"stuck": ValueError, "fine": ValueError})
    service = switch.service(unique("stuck"), ordered_retries=ordered)
    settings = echo_env.settings
    with running(service, echo_env):
        with echo_env.publisher() as publisher:
            stuck = publisher.publish(Ping(key="stuck", seq=1)).event_id
            publisher.publish(Ping(key="fine", seq=2))
        first = wait_dead_letters(settings, service.name, 2)
        assert {d.reason for d in first} == {"retries-exhausted"} and {d.attempts for d in first} == {2}
        del switch.broken["fine"]
        switch.calls.clear()

        report = replay(settings, service.name)
        assert len(report.replayed) == 2
        back = wait_dead_letters(settings, service.name, 3)[-1]
        # The replayed event had its full budget again: the first delivery and one retry.
        assert sorted(a for k, a in switch.calls if k == "stuck") == [1, 2]
        assert back.event_id == stuck and back.replay_count == 1 and back.attempts == 2
        assert back.reason == "retries-exhausted"
        assert back.header_map["retry-original-topic"] == echo_env.in_topic
        assert "dlq-replayed-at" in back.header_map
        wait_outputs(echo_env, 1)

        capped = replay(settings, service.name, options=ReplayOptions(max_replays=1))
        assert capped.replayed == []
        assert capped.plan.skipped_by_reason() == {"already-replayed": 2, "max-replays": 1}
        # Raising the cap sends it once more (and it comes back counting 2).
        switch.broken.clear()
        retried = replay(settings, service.name, DeadLetterFilter(key="stuck"), ReplayOptions(max_replays=2))
        assert [d.event_id for d in retried.replayed] == [stuck]
        outputs = wait_outputs(echo_env, 2)
        assert sorted(causations(outputs)).count(stuck) == 1
