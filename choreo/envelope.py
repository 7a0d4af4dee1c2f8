"""The envelope: CloudEvents binary-mode headers plus choreo's correlation headers (SPEC §3).

Parsing a record into an envelope is separate from decoding its value: the runtime reads the
envelope first (cheap, header-only) to skip foreign event types and duplicates without Avro work.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

SPEC_VERSION = "1.0"

CE_SPECVERSION = "ce_specversion"
CE_ID = "ce_id"
CE_TYPE = "ce_type"
CE_SOURCE = "ce_source"
CE_TIME = "ce_time"
CE_SUBJECT = "ce_subject"
CORRELATION_ID = "correlation-id"
REQUEST_ID = "request-id"
CAUSATION_ID = "causation-id"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# Deterministic output ids are UUIDv5 in this namespace (fixed forever: changing it breaks dedupe).
_OUTPUT_ID_NAMESPACE = uuid.UUID("6f1d3c2e-8a4b-5c6d-9e0f-a1b2c3d4e5f6")
_NAMESPACE_HASH = hashlib.sha1(_OUTPUT_ID_NAMESPACE.bytes)  # copied per id: cheaper than re-hashing it

Headers = list[tuple[str, bytes]]


def new_id() -> str:
    """A fresh random id (event ids of root events, request ids)."""
    return str(uuid.uuid4())


_VARIANT_DIGIT = {digit: format(int(digit, 16) & 0x3 | 0x8, "x") for digit in "0123456789abcdef"}


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_OUTPUT_ID_NAMESPACE, name))``, computed without building UUID objects.

    Hand-written because it runs for every emitted event: the stdlib path costs ~6 µs, this ~1 µs.
    A unit test proves both give the same ids.
    """
    hashed = _NAMESPACE_HASH.copy()
    hashed.update(name.encode())
    text = hashed.hexdigest()
    # Hex digit 12 becomes the version (5); digit 16 keeps its low two bits under the RFC 4122 variant.
    return f"{text[:8]}-{text[8:12]}-5{text[13:16]}-{_VARIANT_DIGIT[text[16]]}{text[17:20]}-{text[20:32]}"


def derived_event_id(input_event_id: str, position: int, event_type: str) -> str:
    """Deterministic ``ce_id`` of the ``position``-th output of type ``event_type`` caused by an input.

    A handler that runs twice (after a crash) emits the same ids, so consumers drop the duplicates.
    """
    return _uuid5(f"{input_event_id}/{position}/{event_type}")


def step_request_id(input_event_id: str, service: str) -> str:
    """The ``request-id`` of the step in which ``service`` handles an input: one per (input event, service),
    stable across re-runs and attempts, and computable by an observer that has only seen the input."""
    return _uuid5(f"{service}/{input_event_id}/request")


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision, as CloudEvents wants ``ce_time``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Envelope(NamedTuple):
    """Everything about an event except its payload. Immutable; built from or into Kafka headers.

    A NamedTuple rather than a frozen dataclass: one is built per consumed record, and a frozen
    dataclass's ``__init__`` costs three times as much (~1.9 µs vs ~0.6 µs).
    """

    event_id: str
    event_type: str
    source: str
    subject: str | None
    time: str
    correlation_id: str
    request_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None

    def to_headers(self) -> Headers:
        """Kafka headers, UTF-8 bytes (absent values are left out)."""
        pairs: list[tuple[str, str | None]] = [
            (CE_SPECVERSION, SPEC_VERSION), (CE_ID, self.event_id), (CE_TYPE, self.event_type),
            (CE_SOURCE, self.source), (CE_TIME, self.time), (CE_SUBJECT, self.subject),
            (CORRELATION_ID, self.correlation_id), (REQUEST_ID, self.request_id),
            (CAUSATION_ID, self.causation_id), (TRACEPARENT, self.traceparent), (TRACESTATE, self.tracestate),
        ]
        return [(name, value.encode()) for name, value in pairs if value is not None]


def headers_to_dict(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, bytes]:
    """Kafka header list → dict (the last value wins for a repeated name; None values dropped)."""
    return {name: value for name, value in (headers or ()) if value is not None}


class EnvelopeError(ValueError):
    """Headers that do not make an envelope (no ``ce_id`` / ``ce_type``)."""


def identify(headers: Mapping[str, bytes | None]) -> tuple[str, str]:
    """``(ce_id, ce_type)`` of a record: all the runtime needs to skip duplicates and pick a handler.

    EnvelopeError if either is missing, empty or not UTF-8.
    """
    event_id, event_type = headers.get(CE_ID), headers.get(CE_TYPE)
    if not event_id or not event_type:
        missing = CE_ID if CE_ID not in headers else CE_TYPE if CE_TYPE not in headers else None
        if missing is not None:
            raise EnvelopeError(f"missing CloudEvents header '{missing}'")
        raise EnvelopeError(f"CloudEvents header {CE_ID} or {CE_TYPE} has no value")
    try:
        return event_id.decode(), event_type.decode()
    except UnicodeDecodeError as exc:
        raise EnvelopeError(f"CloudEvents header is not UTF-8: {exc}") from None


def parse_envelope(headers: Mapping[str, bytes | None]) -> Envelope:
    """Envelope from a header dict. EnvelopeError if the CloudEvents id or type is missing.

    A record without ``correlation-id`` starts a new job: its own event id becomes the correlation id.
    Retry/DLQ headers are not part of the envelope: the retry layer reads them from the record.
    """
    event_id, event_type = identify(headers)
    get = headers.get  # ~10 headers per record, on the hot path: plain look-ups, no loops
    source, subject, time = get(CE_SOURCE), get(CE_SUBJECT), get(CE_TIME)
    correlation, request, causation = get(CORRELATION_ID), get(REQUEST_ID), get(CAUSATION_ID)
    traceparent, tracestate = get(TRACEPARENT), get(TRACESTATE)
    return Envelope(
        event_id=event_id, event_type=event_type, source=source.decode(errors="replace") if source else "",
        subject=subject.decode(errors="replace") if subject is not None else None,
        time=time.decode(errors="replace") if time else "",
        correlation_id=correlation.decode(errors="replace") if correlation else event_id,
        request_id=request.decode(errors="replace") if request is not None else None,
        causation_id=causation.decode(errors="replace") if causation is not None else None,
        traceparent=traceparent.decode(errors="replace") if traceparent is not None else None,
        tracestate=tracestate.decode(errors="replace") if tracestate is not None else None,
    )


def root_envelope(event_type: str, source: str, subject: str | None, *,
                  correlation_id: str | None = None, now: datetime | None = None) -> Envelope:
    """Envelope for an event that starts a job (no cause): fresh ids, correlation = its own id."""
    event_id = new_id()
    return Envelope(
        event_id=event_id, event_type=event_type, source=source, subject=subject,
        time=format_time(now or datetime.now(UTC)), correlation_id=correlation_id or event_id,
        request_id=new_id(),
    )


def caused_envelope(cause: Envelope, *, position: int, event_type: str, source: str, subject: str | None,
                    request_id: str, time: str | None = None) -> Envelope:
    """Envelope of the ``position``-th event emitted while handling ``cause``.

    Inherits the correlation id and trace context, takes the step's request id, names the cause.
    ``time`` is the RFC 3339 ``ce_time`` (default: now); the runtime stamps one per batch.
    """
    return Envelope(
        event_id=derived_event_id(cause.event_id, position, event_type), event_type=event_type,
        source=source, subject=subject, time=time or format_time(datetime.now(UTC)),
        correlation_id=cause.correlation_id, request_id=request_id, causation_id=cause.event_id,
        traceparent=cause.traceparent, tracestate=cause.tracestate,
    )


def step_headers(cause: Mapping[str, bytes | None], cause_id: str, *, source: str, request_id: str,
                 time: str) -> Headers:
    """The headers every event emitted while handling a record shares: all but id, type and subject.

    ``cause`` is the input record's header dict and ``cause_id`` its ``ce_id``: the correlation id and
    trace context are copied as bytes, without building an Envelope (the runtime's hot path). With
    :func:`output_headers` this gives ``caused_envelope(...).to_headers()``; a unit test proves it.
    """
    shared: Headers = [(CE_SOURCE, source.encode()), (CE_TIME, time.encode()),
                       (CORRELATION_ID, cause.get(CORRELATION_ID) or cause_id.encode()),
                       (REQUEST_ID, request_id.encode()), (CAUSATION_ID, cause_id.encode())]
    traceparent, tracestate = cause.get(TRACEPARENT), cause.get(TRACESTATE)
    if traceparent is not None:
        shared.append((TRACEPARENT, traceparent))
    if tracestate is not None:
        shared.append((TRACESTATE, tracestate))
    return shared


_SPEC_VERSION_HEADER = (CE_SPECVERSION, SPEC_VERSION.encode())


def output_headers(shared: Headers, event_id: str, event_type: bytes, subject: str | None) -> Headers:
    """Headers of one emitted event: its id, type (UTF-8) and subject, then the step's ``shared`` ones."""
    if subject is None:
        return [_SPEC_VERSION_HEADER, (CE_ID, event_id.encode()), (CE_TYPE, event_type), *shared]
    return [_SPEC_VERSION_HEADER, (CE_ID, event_id.encode()), (CE_TYPE, event_type),
            (CE_SUBJECT, subject.encode()), *shared]
