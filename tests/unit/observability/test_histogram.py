"""BatchedHistogram exposes exactly what prometheus_client's Histogram would for the same observations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from choreo.observability.histogram import BatchedHistogram

BUCKETS = (0.0005, 0.001, 0.01, 0.1, 1, 10)


@given(batches=st.lists(st.lists(st.sampled_from([0.0, 0.0005, 0.0007, 0.001, 0.05, 0.1, 3.0, 11.0, 1e6])
                                 | st.floats(0, 20), max_size=20), max_size=5))
def test_exposition_matches_prometheus_histogram(batches: list[list[float]]) -> None:
    reference_registry, batched_registry = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("h_seconds", "doc", ["service"], buckets=BUCKETS, registry=reference_registry)
    batched = BatchedHistogram("h_seconds", "doc", ["service"], BUCKETS, registry=batched_registry)
    for values in batches:
        tally = batched.tally()
        for value in values:
            reference.labels("svc").observe(value)
            tally.observe(value)
        if tally:
            batched.merge(("svc",), tally)
    assert _samples(batched_registry) == pytest.approx(_samples(reference_registry))


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every exposed sample by name and labels (prometheus_client's own ``_created`` left out)."""
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if not sample.name.endswith("_created")}


def test_merge_checks_the_label_count() -> None:
    batched = BatchedHistogram("h2_seconds", "doc", ["service", "event_type"], BUCKETS, registry=None)
    with pytest.raises(ValueError, match="takes labels"):
        batched.merge(("svc",), batched.tally())


def test_a_cleared_tally_adds_nothing() -> None:
    registry = CollectorRegistry()
    batched = BatchedHistogram("h3_seconds", "doc", ["service"], BUCKETS, registry=registry)
    tally = batched.tally()
    tally.observe(0.5)
    tally.clear()
    assert not tally
    batched.merge(("svc",), tally)
    assert registry.get_sample_value("h3_seconds_count", {"service": "svc"}) == 0.0
