"""Bytes in, acknowledgements out: a confluent-kafka Producer that never reports unacked records as sent.

Records are produced asynchronously (librdkafka batches them by ``linger.ms``); :meth:`flush` waits for
every delivery report and raises ProduceError if any record failed. Idempotence (``enable.idempotence``,
``acks=all``) keeps per-partition order through librdkafka's own retries.
Thread-safety: produce() and flush() from one thread (the consumer loop's).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from choreo.errors import ProduceError

log = logging.getLogger(__name__)

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",  # the Java client's partitioner: same key → same partition
    "linger.ms": 5,
    "compression.type": "lz4",
    # Only failures call back into Python: a callback per acknowledged record costs the hot path.
    "delivery.report.only.error": True,
}


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """A record ready for the wire: topic, key (UTF-8 entity id), value bytes, headers."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class ReliableProducer:
    """Produce asynchronously, then :meth:`flush` to learn — for certain — that everything landed."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._producer = Producer({**PRODUCER_DEFAULTS, **config})
        self._failures: list[tuple[OutgoingRecord | None, KafkaError]] = []

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        # Runs inside poll()/flush() on the caller's thread, for failed deliveries only.
        if error is not None:
            self._failures.append((None, error))
            log.error("delivery failed topic=%s partition=%s error=%s", message.topic(), message.partition(), error)

    def produce(self, record: OutgoingRecord) -> None:
        """Queue one record. A full local queue is drained by polling, never by dropping."""
        while True:
            try:
                self._producer.produce(
                    record.topic, value=record.value, key=record.key, headers=record.headers,
                    on_delivery=self._on_delivery,
                )
                return
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise ProduceError(f"cannot produce to {record.topic}: {exc}", topic=record.topic) from exc

    def poll(self) -> None:
        """Serve delivery callbacks without blocking (call once per batch)."""
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every queued record's acknowledgement; ProduceError if any failed or timed out.

        Failures are cleared once raised, so the caller can re-produce and flush again.
        """
        remaining = self._producer.flush(timeout_s)
        failures, self._failures = self._failures, []
        if remaining:
            raise ProduceError(f"{remaining} records not acknowledged within {timeout_s:.0f}s")
        if failures:
            first = failures[0][1]
            raise ProduceError(f"{len(failures)} records failed delivery, first: {first.str()}",
                               fatal=any(error.fatal() for _, error in failures))

    def __len__(self) -> int:
        """Records queued and not yet acknowledged."""
        return len(self._producer)

    def close(self, timeout_s: float = 10.0) -> None:
        try:
            self.flush(timeout_s)
        except ProduceError as exc:
            log.error("producer closed with undelivered records: %s", exc)
