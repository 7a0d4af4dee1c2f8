"""Pure logic of the stage list, join declarations and results, and timer ids."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from confluent_kafka import Message

from choreo import ConfigError, Service
from choreo.join import Joined
from choreo.runtime.pipeline import Pipeline, Rec, Stage, Status
from choreo.runtime.timers import timer_event_id
from tests.support.timed import Both, Left, Right, Start


class _Recorder(Stage):
    def __init__(self, name: str, calls: list[str], stop_on: str | None = None) -> None:
        self.name, self.calls, self.stop_on = name, calls, stop_on

    def begin(self, recs: Sequence[Rec]) -> None:
        self.calls.append(f"{self.name}.begin({len(recs)})")

    def enter(self, rec: Rec) -> bool:
        self.calls.append(f"{self.name}.enter({rec.event_id})")
        if rec.event_id == self.stop_on:
            rec.status = Status.DUPLICATE
            return False
        return True

    def leave(self, rec: Rec) -> None:
        self.calls.append(f"{self.name}.leave({rec.event_id})")


class _EnterOnly(Stage):
    name = "enter-only"

    def enter(self, rec: Rec) -> bool:
        rec.status = Status.HANDLED
        return True


def _rec(event_id: str) -> Rec:
    return Rec(Message(topic="t", partition=0, offset=1, key=b"k"), event_id, {}, route=None, attempt=1)


def test_a_stopped_walk_skips_later_enters_but_every_stage_leaves_in_reverse() -> None:
    calls: list[str] = []
    pipeline = Pipeline([_Recorder("a", calls, stop_on="x"), _Recorder("b", calls)])
    pipeline.run([_rec("x"), _rec("y")])
    assert calls == ["a.begin(2)", "b.begin(2)",
                     "a.enter(x)", "b.leave(x)", "a.leave(x)",
                     "a.enter(y)", "b.enter(y)", "b.leave(y)", "a.leave(y)"]


def test_only_overridden_hooks_are_called_and_the_path_is_named() -> None:
    stage = _EnterOnly()
    pipeline = Pipeline([stage])
    assert pipeline._begin == [] and pipeline._leave == [] and len(pipeline._enter) == 1
    assert pipeline.describe() == "intake → enter-only"


def test_joined_gives_parts_in_declared_order_and_names_the_missing() -> None:
    left = Left(key="k", x=1)
    partial = Joined((Left, Right), {Left: left})
    assert list(partial) == [left, None] and partial[Left] is left and partial[Right] is None
    assert not partial.complete and partial.missing == [Right]
    assert repr(partial) == "Joined(Left, Right?)"
    with pytest.raises(KeyError, match="Both is not a part"):
        partial[Both]
    whole = Joined((Left, Right), {Left: left, Right: Right(key="k", y=2)})
    first, second = whole
    assert whole.complete and first is left and second.y == 2


def test_join_declarations_are_checked() -> None:
    service = Service("svc")
    with pytest.raises(ConfigError, match="at least two"):
        service.join(Left, within=1)
    with pytest.raises(ConfigError, match="twice"):
        service.join(Left, Left, within=1)
    with pytest.raises(ConfigError, match="must be positive"):
        service.join(Left, Right, within=timedelta(0))
    service.join(Left, Right, within=timedelta(seconds=5))(lambda parts, ctx: None)
    assert service.joins[0].within_s == 5.0
    with pytest.raises(ConfigError, match="two handlers for Left"):
        service.handler(Left)(lambda event, ctx: None)
    with pytest.raises(ConfigError, match="two handlers for Right"):
        service.join(Right, Start, within=1)(lambda parts, ctx: None)


def test_timer_handlers_are_one_per_event_type() -> None:
    service = Service("svc")
    service.on_timer(Start)(lambda event, ctx: None)
    assert service.timer_handlers[Start].transactional
    with pytest.raises(ConfigError, match="two timer handlers for Start"):
        service.on_timer(Start)(lambda event, ctx: None)


def test_a_timer_id_is_stable_per_cause_and_name() -> None:
    assert timer_event_id("cause-1", "deadline") == timer_event_id("cause-1", "deadline")
    assert timer_event_id("cause-1", "deadline") != timer_event_id("cause-2", "deadline")
    assert timer_event_id("cause-1", "deadline") != timer_event_id("cause-1", "other")
