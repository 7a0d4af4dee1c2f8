"""Where records go when they cannot be handled: the seam the retry/DLQ layer plugs into.

The batch processor calls a FailurePolicy for poison records (no envelope, undecodable value) and for
handler errors. A policy that produces (to retry or dead-letter topics) must use the producer it is
given, so its records are covered by the batch's flush: the input offset is stored only once they
are acknowledged.
"""

from __future__ import annotations

import logging
from typing import Literal, Protocol

from confluent_kafka import Message

from choreo.envelope import Envelope
from choreo.kafka.producer import ReliableProducer
from choreo.observability import metrics

log = logging.getLogger(__name__)


class FailurePolicy(Protocol):
    """Decides the fate of a record that failed. Called on the consumer thread, inside a batch."""

    def on_poison(self, message: Message, error: Exception, producer: ReliableProducer) -> None: ...

    def on_handler_error(self, message: Message, envelope: Envelope, error: Exception,
                         producer: ReliableProducer) -> Literal["retry", "dead-letter"]:
        """Route the failed record; say whether it will be retried or is finished (dead-lettered)."""
        ...


class LogAndSkip:
    """Log with topic/partition/offset and move on. Used where no dead-letter topic is configured."""

    def __init__(self, service: str) -> None:
        self.service = service

    def on_poison(self, message: Message, error: Exception, producer: ReliableProducer) -> None:
        metrics.SKIPPED_POISON.labels(self.service, message.topic()).inc()
        log.error("poison record skipped service=%s topic=%s partition=%s offset=%s error=%s",
                  self.service, message.topic(), message.partition(), message.offset(), error)

    def on_handler_error(self, message: Message, envelope: Envelope, error: Exception,
                         producer: ReliableProducer) -> Literal["retry", "dead-letter"]:
        log.error("handler failed, event skipped service=%s topic=%s partition=%s offset=%s "
                  "event_id=%s correlation_id=%s error=%r", self.service, message.topic(),
                  message.partition(), message.offset(), envelope.event_id, envelope.correlation_id, error)
        return "dead-letter"
