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
    output_headers,
    parse_envelope,
    root_envelope,
    step_headers,
    step_request_id,
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


@given(traceparent=st.none() | st.text(min_size=1), tracestate=st.none() | st.text(min_size=1),
       subject=st.none() | st.text(), position=st.integers(0, 50))
def test_fast_output_headers_equal_the_caused_envelope(traceparent: str | None, tracestate: str | None,
                                                       subject: str | None, position: int) -> None:
    cause = root_envelope("io.x.A", "svc", "o-1")._replace(traceparent=traceparent, tracestate=tracestate)
    expected = caused_envelope(cause, position=position, event_type="io.x.B", source="b", subject=subject,
                               request_id="r-1", time="2026-11-23T10:00:00.000Z")
    shared = step_headers(dict(cause.to_headers()), cause.event_id, source="b", request_id="r-1",
                          time="2026-11-23T10:00:00.000Z")
    fast = output_headers(shared, expected.event_id, b"io.x.B", subject)
    assert sorted(fast) == sorted(expected.to_headers())
    assert parse_envelope(dict(fast)) == expected


def test_header_without_a_value_is_an_envelope_error() -> None:
    with pytest.raises(EnvelopeError, match="no value"):
        parse_envelope({"ce_id": None, "ce_type": b"t"})  # type: ignore[dict-item]


def test_a_context_built_from_an_envelope_answers_like_the_runtime_one() -> None:
    from choreo.context import Context

    root = root_envelope("io.x.A", "svc", "o-1")
    by_envelope = Context(service="s", topic="t", partition=0, offset=1, request_id="r", envelope=root)
    by_headers = Context(service="s", topic="t", partition=0, offset=1, request_id="r",
                         headers=dict(root.to_headers()), event_id=root.event_id)
    for ctx in (by_envelope, by_headers):
        assert ctx.event_id == root.event_id
        assert ctx.correlation_id == root.correlation_id
        assert ctx.envelope == root
    with pytest.raises(TypeError, match="headers or an envelope"):
        Context(service="s", topic="t", partition=0, offset=1, request_id="r")


def test_the_runtime_context_equals_a_keyword_built_one_and_derives_the_step_request_id() -> None:
    from choreo.context import Context

    root = root_envelope("io.x.A", "svc", "o-1")
    headers = dict(root.to_headers())
    fast = Context.of_record("s", "t", 3, 7, root.event_id, headers, 2)
    by_keywords = Context(service="s", topic="t", partition=3, offset=7, event_id=root.event_id,
                          headers=headers, attempt=2)
    for ctx in (fast, by_keywords):
        assert (ctx.service, ctx.topic, ctx.partition, ctx.offset, ctx.attempt) == ("s", "t", 3, 7, 2)
        assert ctx.event_id == root.event_id and ctx.tx is None
        assert ctx.request_id == step_request_id(root.event_id, ctx.service)  # derived on first use, stable
        assert ctx.envelope == root
    explicit = Context(service="s", topic="t", partition=0, offset=0, request_id="r-9", envelope=root)
    assert explicit.request_id == "r-9"
