"""Routes failed records to ``<service>.retry.<n>`` or ``<service>.dlq`` (non-blocking retries).

The failed record is re-produced unchanged (key, value, CloudEvents headers) with retry headers that
say which attempt comes next and when it is due; the original partition moves on at once.
The records go through the batch's producer, so the input offset is stored only after the retry or
dead letter is acknowledged: if writing it fails, the batch is re-run and nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from confluent_kafka import Message

from choreo.envelope import Envelope, headers_to_dict
from choreo.kafka.producer import OutgoingRecord, ReliableProducer
from choreo.observability import metrics
from choreo.retry import headers as h
from choreo.retry.policy import RetryPolicy, Verdict

if TYPE_CHECKING:
    from choreo.service import BoundService

log = logging.getLogger(__name__)

DeadLetterHook = Callable[[OutgoingRecord, BaseException], None]


class RetryRouter:
    """A FailurePolicy: retry topics with backoff, then the dead-letter topic."""

    def __init__(self, service: str, policy: RetryPolicy | None = None, *,
                 policies: dict[str, RetryPolicy] | None = None,
                 on_dead_letter: DeadLetterHook | None = None) -> None:
        self.service = service
        self.policy = policy or RetryPolicy()
        self.policies = policies or {}  # per event type (ce_type) overrides
        self.on_dead_letter = on_dead_letter

    @classmethod
    def for_service(cls, bound: BoundService, on_dead_letter: DeadLetterHook | None = None) -> RetryRouter:
        """The router a service declares: its retry policy and its handlers' overrides."""
        return cls(bound.name, bound.service.retry, policies=bound.retry_policies(), on_dead_letter=on_dead_letter)

    def topics(self) -> list[str]:
        """Every retry level any policy may use (at least one: DLQ replay and ordered retries
        re-enter through ``retry.1``), plus the DLQ."""
        most = max([self.policy.retries, *(p.retries for p in self.policies.values())])
        return [h.retry_topic(self.service, n) for n in range(1, max(1, most) + 1)] + [h.dlq_topic(self.service)]

    def on_poison(self, message: Message, error: Exception, producer: ReliableProducer) -> None:
        metrics.SKIPPED_POISON.labels(self.service, message.topic()).inc()
        self._dead_letter(message, error, "poison", attempts=1, producer=producer)

    def on_handler_error(self, message: Message, envelope: Envelope, error: Exception,
                         producer: ReliableProducer) -> Verdict:
        headers = headers_to_dict(message.headers())
        attempt = h.header_int(headers, h.RETRY_ATTEMPT, 1)
        policy = self.policies.get(envelope.event_type, self.policy)
        if policy.decide(error, attempt) == "dead-letter":
            reason = "permanent-error" if policy.classify(error) == "permanent" else "retries-exhausted"
            self._dead_letter(message, error, reason, attempts=attempt, producer=producer)
            return "dead-letter"
        now = h.now_ms()
        due = now + int(policy.delay_before(attempt) * 1000)
        first = h.header_int(headers, h.DLQ_FIRST_FAILURE, now)
        record = OutgoingRecord(
            h.retry_topic(self.service, attempt), message.key(), message.value(),
            h.carried_headers(message) + h.original_position(message, headers) + [
                (h.RETRY_ATTEMPT, str(attempt + 1).encode()), (h.RETRY_NOT_BEFORE, str(due).encode()),
            ] + ([] if h.DLQ_FIRST_FAILURE in headers else [(h.DLQ_FIRST_FAILURE, str(first).encode())]),
        )
        producer.produce(record)
        metrics.RETRIES.labels(self.service, message.topic(), str(attempt + 1)).inc()
        log.warning("retry scheduled service=%s event_id=%s attempt=%d due_in_ms=%d error=%r",
                    self.service, envelope.event_id, attempt + 1, due - now, error)
        return "retry"

    def _dead_letter(self, message: Message, error: BaseException, reason: str, *, attempts: int,
                     producer: ReliableProducer) -> None:
        headers = headers_to_dict(message.headers())
        now = h.now_ms()
        first = None if h.DLQ_FIRST_FAILURE in headers else now  # a retried record carries its first failure
        record = OutgoingRecord(
            h.dlq_topic(self.service), message.key(), message.value(),
            h.carried_headers(message) + h.original_position(message, headers) + h.failure_headers(
                error, reason=reason, attempts=attempts, service=self.service, first_failure_ms=first, at_ms=now),
        )
        producer.produce(record)
        metrics.DEAD_LETTERED.labels(self.service, message.topic(), reason).inc()
        log.error("dead-lettered service=%s topic=%s partition=%s offset=%s reason=%s error=%r",
                  self.service, message.topic(), message.partition(), message.offset(), reason, error)
        if self.on_dead_letter is not None:
            self.on_dead_letter(record, error)
