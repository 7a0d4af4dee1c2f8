"""Where records go when they cannot be handled: the seam the retry/DLQ layer plugs into.

The batch processor calls a FailurePolicy for poison records (no envelope, undecodable value) and for
handler errors. A policy that produces (to retry or dead-letter topics) must use the producer it is
given, so its records are covered by the batch's flush: the input offset is stored only once they
are acknowledged. :class:`choreo.retry.RetryRouter` is the one choreo uses.
"""

from __future__ import annotations

from typing import Literal, Protocol

from confluent_kafka import Message

from choreo.envelope import Envelope
from choreo.kafka.producer import ReliableProducer


class FailurePolicy(Protocol):
    """Decides the fate of a record that failed. Called on the consumer thread, inside a batch."""

    def topics(self) -> list[str]:
        """Topics the policy produces to: the worker creates them and reads the ones that are not DLQs."""
        ...

    def on_poison(self, message: Message, error: Exception, producer: ReliableProducer) -> None: ...

    def on_handler_error(self, message: Message, envelope: Envelope, error: Exception,
                         producer: ReliableProducer) -> Literal["retry", "dead-letter"]:
        """Route the failed record; say whether it will be retried or is finished (dead-lettered)."""
        ...
