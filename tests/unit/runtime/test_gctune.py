"""tune_gc: what `choreo run` does to the collector before its worker starts."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from choreo.runtime.gctune import tune_gc


@pytest.fixture
def gc_state() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.unfreeze()  # each test starts with nothing frozen
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_objects_alive_at_start_are_frozen_and_collections_come_less_often(gc_state: None) -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc(50_000)
    assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_freeze_count() > 0


def test_zero_leaves_the_collector_alone(gc_state: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    tune_gc(0)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_a_higher_threshold_already_set_is_kept(gc_state: None) -> None:
    gc.set_threshold(100_000, 10, 10)
    tune_gc(50_000)
    assert gc.get_threshold()[0] == 100_000
