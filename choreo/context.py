"""What a handler sees besides its event: where it came from, the job it belongs to, and the store."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from choreo.envelope import CE_SUBJECT, CORRELATION_ID, Envelope, parse_envelope, step_request_id

if TYPE_CHECKING:
    from choreo.events import Event


class Context:
    """Per-run context handed to a handler with its event. Valid only during that handler call.

    ``tx`` is set for transactional handlers: an open database transaction (``tx.connection``) that
    commits together with the mark that the event was processed (the inbox pattern).
    The full :attr:`envelope` is decoded from the record's headers on first use (most handlers never
    ask, and one context is built per consumed record); the step's :attr:`request_id` is derived on
    first use too, which saves its hashing for records whose handler emits nothing.
    """

    __slots__ = ("service", "topic", "partition", "offset", "event_id", "attempt", "tx", "timers", "settings",
                 "_request_id", "_headers", "_envelope", "_shared_state")

    def __init__(self, *, service: str, topic: str, partition: int, offset: int, request_id: str | None = None,
                 event_id: str | None = None, headers: Mapping[str, bytes | None] | None = None,
                 envelope: Envelope | None = None, attempt: int = 1, tx: Any = None) -> None:
        """The runtime passes the record's ``headers`` and ``event_id``; a handler's own unit test may
        pass an ``envelope`` instead (e.g. from ``root_envelope(...)``). Without ``request_id`` the
        step's id is derived from the event id, as the runtime does."""
        if headers is None:
            if envelope is None:
                raise TypeError("Context needs the record's headers or an envelope")
            headers = dict(envelope.to_headers())
        self.service = service
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.event_id = event_id if event_id is not None else (envelope or parse_envelope(headers)).event_id
        self._request_id = request_id
        self.attempt = attempt
        self.tx = tx
        self.timers: Any = None  # the runtime's TimerBook for this run (see schedule / cancel)
        self.settings: Any = None  # the worker's Settings (None in a handler's own unit test: read from env)
        self._shared_state: Any = None
        self._headers = headers
        self._envelope = envelope

    @classmethod
    def of_record(cls, service: str, topic: str, partition: int, offset: int, event_id: str,
                  headers: Mapping[str, bytes | None], attempt: int) -> Context:
        """The runtime's constructor: positional, no checks (one context per consumed record)."""
        ctx = cls.__new__(cls)
        ctx.service, ctx.topic, ctx.partition, ctx.offset = service, topic, partition, offset
        ctx.event_id, ctx._headers, ctx.attempt = event_id, headers, attempt
        ctx.tx = ctx.timers = ctx.settings = ctx._request_id = ctx._envelope = ctx._shared_state = None
        return ctx

    @property
    def request_id(self) -> str:
        """The step's ``request-id``: one per (input event, service), stable across re-runs and attempts."""
        if self._request_id is None:
            self._request_id = step_request_id(self.event_id, self.service)
        return self._request_id

    @request_id.setter
    def request_id(self, value: str) -> None:
        self._request_id = value

    @property
    def headers(self) -> Mapping[str, bytes | None]:
        """The input record's headers, by name (read-only by convention)."""
        return self._headers

    @property
    def envelope(self) -> Envelope:
        """The input event's CloudEvents and correlation headers, decoded."""
        if self._envelope is None:
            self._envelope = parse_envelope(self._headers)
        return self._envelope

    @property
    def correlation_id(self) -> str:
        """The job id: the same on every event of one saga (the event's own id if it starts one)."""
        correlation = self._headers.get(CORRELATION_ID)
        return correlation.decode(errors="replace") if correlation else self.event_id

    @property
    def causation_id(self) -> str | None:
        return self.envelope.causation_id

    @property
    def shared_state(self) -> Any:
        """The job's shared state (``GET/PUT $CHOREO_PROGRESS_URL/jobs/<job>/state``, with the services'
        bearer token): a :class:`choreo.shared_state.SharedState` for this run's job, built on first use."""
        if self._shared_state is None:
            from choreo.config import get_settings
            from choreo.shared_state import shared_state_for  # not imported on the hot path

            self._shared_state = shared_state_for(self.settings or get_settings(), self.correlation_id)
        return self._shared_state

    @property
    def key(self) -> str | None:
        """The entity id of the input (``ce_subject``, the Kafka key)."""
        subject = self._headers.get(CE_SUBJECT)
        return subject.decode(errors="replace") if subject else None

    def schedule(self, event: Event, *, at: datetime, name: str | None = None) -> str:
        """Have ``event`` emitted at ``at`` (timezone-aware) unless cancelled first; returns the timer's name.

        A timer belongs to ``event``'s key and is named ``name`` (default: the event's class name):
        scheduling the same name for the same key again replaces it. It is stored in the service's
        store — in the handler's transaction when there is one, else once the run's outputs are
        acknowledged — and fires on the member that owns the key's partition, at most a few hundred ms
        late, once: the due event gets a deterministic ``ce_id``, so a re-fire after a crash is a
        duplicate. A service's ``@on_timer(EventClass)`` handler, if declared, gets the event instead
        and decides what to emit.
        """
        if self.timers is None:
            raise RuntimeError("ctx.schedule works only inside a handler run by the choreo runtime")
        if at.tzinfo is None:
            raise ValueError(f"ctx.schedule needs a timezone-aware time, got naive {at.isoformat()}")
        return self.timers.schedule(self, event, at, name or type(event).__name__)

    def cancel(self, name: str, key: str | None = None) -> None:
        """Cancel the timer ``name`` of ``key`` (default: this input's key); a no-op if none is pending."""
        if self.timers is None:
            raise RuntimeError("ctx.cancel works only inside a handler run by the choreo runtime")
        timer_key = key if key is not None else self.key
        if timer_key is None:
            raise ValueError("ctx.cancel needs a key: this input has none")
        self.timers.cancel(self, timer_key, name)

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that stamps service, topic, partition, offset, event and correlation ids."""
        return logging.LoggerAdapter(logging.getLogger(f"choreo.handler.{self.service}"), {
            "service": self.service, "topic": self.topic, "partition": self.partition,
            "offset": self.offset, "event_id": self.event_id, "correlation_id": self.correlation_id,
        })

    def __repr__(self) -> str:
        return (f"Context(service={self.service!r}, topic={self.topic!r}, partition={self.partition}, "
                f"offset={self.offset}, event_id={self.event_id!r}, attempt={self.attempt})")
