"""Header codec and deterministic ids (pure logic)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreo.envelope import (
    EnvelopeError,
    caused_envelope,
    derived_event_id,
    headers_to_dict,
    parse_envelope,
    root_envelope,
)


def test_root_envelope_round_trips_through_headers() -> None:
    root = root_envelope("io.x.A", "svc", "o-1")
    parsed = parse_envelope(headers_to_dict(root.to_headers()))
    assert parsed == root
    assert root.correlation_id == root.event_id


def test_caused_envelope_inherits_job_and_names_cause() -> None:
    root = root_envelope("io.x.A", "svc", "o-1")
    child = caused_envelope(root, position=0, event_type="io.x.B", source="b", subject="o-1", request_id="r")
    assert child.correlation_id == root.correlation_id
    assert child.causation_id == root.event_id
    assert child.event_id == derived_event_id(root.event_id, 0, "io.x.B")
    again = caused_envelope(root, position=0, event_type="io.x.B", source="b", subject="o-1", request_id="r2")
    assert again.event_id == child.event_id  # a re-run emits the same id


@given(st.text(min_size=1), st.integers(0, 1000), st.text(min_size=1))
def test_derived_ids_are_deterministic_and_position_sensitive(cause: str, position: int, kind: str) -> None:
    assert derived_event_id(cause, position, kind) == derived_event_id(cause, position, kind)
    assert derived_event_id(cause, position, kind) != derived_event_id(cause, position + 1, kind)


def test_missing_ce_id_is_an_envelope_error() -> None:
    with pytest.raises(EnvelopeError, match="ce_id"):
        parse_envelope({"ce_type": b"x"})


def test_record_without_correlation_starts_a_job() -> None:
    envelope = parse_envelope({"ce_id": b"e1", "ce_type": b"t"})
    assert envelope.correlation_id == "e1"


@given(st.text())
def test_fast_uuid5_matches_the_standard_library(name: str) -> None:
    import uuid

    from choreo.envelope import _OUTPUT_ID_NAMESPACE, _uuid5

    assert _uuid5(name) == str(uuid.uuid5(_OUTPUT_ID_NAMESPACE, name))
