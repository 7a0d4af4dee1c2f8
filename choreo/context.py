"""What a handler sees besides its event: where it came from, the job it belongs to, and the store."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from choreo.envelope import Envelope


@dataclass(slots=True)
class Context:
    """Per-run context handed to a handler with its event. Valid only during that handler call.

    ``tx`` is set for transactional handlers: an open database transaction (``tx.connection``) that
    commits together with the mark that the event was processed (the inbox pattern).
    """

    service: str
    envelope: Envelope
    topic: str
    partition: int
    offset: int
    request_id: str
    attempt: int = 1
    tx: Any = None

    @property
    def event_id(self) -> str:
        return self.envelope.event_id

    @property
    def correlation_id(self) -> str:
        """The job id: the same on every event of one saga."""
        return self.envelope.correlation_id

    @property
    def causation_id(self) -> str | None:
        return self.envelope.causation_id

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that stamps service, topic, partition, offset, event and correlation ids."""
        return logging.LoggerAdapter(logging.getLogger(f"choreo.handler.{self.service}"), {
            "service": self.service, "topic": self.topic, "partition": self.partition,
            "offset": self.offset, "event_id": self.event_id, "correlation_id": self.correlation_id,
        })
