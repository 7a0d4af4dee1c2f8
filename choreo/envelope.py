"""The envelope: CloudEvents binary-mode headers plus choreo's correlation headers (SPEC §3).

Parsing a record into an envelope is separate from decoding its value: the runtime reads the
envelope first (cheap, header-only) to skip foreign event types and duplicates without Avro work.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

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

Headers = list[tuple[str, bytes]]


def new_id() -> str:
    """A fresh random id (event ids of root events, request ids)."""
    return str(uuid.uuid4())


def derived_event_id(input_event_id: str, position: int, event_type: str) -> str:
    """Deterministic ``ce_id`` of the ``position``-th output of type ``event_type`` caused by an input.

    A handler that runs twice (after a crash) emits the same ids, so consumers drop the duplicates.
    """
    return str(uuid.uuid5(_OUTPUT_ID_NAMESPACE, f"{input_event_id}/{position}/{event_type}"))


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision, as CloudEvents wants ``ce_time``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Envelope:
    """Everything about an event except its payload. Immutable; built from or into Kafka headers."""

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
    extra: dict[str, bytes] = field(default_factory=dict)

    def to_headers(self) -> Headers:
        """Kafka headers, UTF-8 bytes; ``extra`` (retry/DLQ headers) appended as they are."""
        pairs: list[tuple[str, str | None]] = [
            (CE_SPECVERSION, SPEC_VERSION), (CE_ID, self.event_id), (CE_TYPE, self.event_type),
            (CE_SOURCE, self.source), (CE_TIME, self.time), (CE_SUBJECT, self.subject),
            (CORRELATION_ID, self.correlation_id), (REQUEST_ID, self.request_id),
            (CAUSATION_ID, self.causation_id), (TRACEPARENT, self.traceparent), (TRACESTATE, self.tracestate),
        ]
        headers: Headers = [(name, value.encode()) for name, value in pairs if value is not None]
        headers.extend(self.extra.items())
        return headers


_KNOWN = {CE_SPECVERSION, CE_ID, CE_TYPE, CE_SOURCE, CE_TIME, CE_SUBJECT, CORRELATION_ID, REQUEST_ID,
          CAUSATION_ID, TRACEPARENT, TRACESTATE}


def headers_to_dict(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, bytes]:
    """Kafka header list → dict (the last value wins for a repeated name; None values dropped)."""
    return {name: value for name, value in (headers or ()) if value is not None}


class EnvelopeError(ValueError):
    """Headers that do not make an envelope (no ``ce_id`` / ``ce_type``)."""


def parse_envelope(headers: dict[str, bytes]) -> Envelope:
    """Envelope from a header dict. EnvelopeError if the CloudEvents id or type is missing.

    A record without ``correlation-id`` starts a new job: its own event id becomes the correlation id.
    """
    try:
        event_id = headers[CE_ID].decode()
        event_type = headers[CE_TYPE].decode()
    except KeyError as missing:
        raise EnvelopeError(f"missing CloudEvents header {missing}") from None
    except UnicodeDecodeError as exc:
        raise EnvelopeError(f"CloudEvents header is not UTF-8: {exc}") from None

    def text(name: str) -> str | None:
        value = headers.get(name)
        return value.decode(errors="replace") if value is not None else None

    return Envelope(
        event_id=event_id, event_type=event_type, source=text(CE_SOURCE) or "",
        subject=text(CE_SUBJECT), time=text(CE_TIME) or "",
        correlation_id=text(CORRELATION_ID) or event_id, request_id=text(REQUEST_ID),
        causation_id=text(CAUSATION_ID), traceparent=text(TRACEPARENT), tracestate=text(TRACESTATE),
        extra={k: v for k, v in headers.items() if k not in _KNOWN},
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
                    request_id: str, now: datetime | None = None) -> Envelope:
    """Envelope of the ``position``-th event emitted while handling ``cause``.

    Inherits the correlation id and trace context, takes the step's request id, names the cause.
    """
    return Envelope(
        event_id=derived_event_id(cause.event_id, position, event_type), event_type=event_type,
        source=source, subject=subject, time=format_time(now or datetime.now(UTC)),
        correlation_id=cause.correlation_id, request_id=request_id, causation_id=cause.event_id,
        traceparent=cause.traceparent, tracestate=cause.tracestate,
    )
