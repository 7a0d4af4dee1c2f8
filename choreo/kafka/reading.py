"""Reading a topic from its beginning to its end, without a consumer group.

"The end" is where every partition has reported PARTITION_EOF: the high watermark carried by that
partition's last fetch response. It is never taken from ListOffsets: on Tansu, ListOffsets(latest)
reports the last batch's base offset + 1, not the high watermark (SPEC §1). Records produced while
reading may or may not be included.

Partitions are assigned directly from OFFSET_BEGINNING: no group is joined and nothing is committed.
Every call uses its own consumer, so calls may run in parallel threads.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from choreo.config import Settings
from choreo.errors import ConfigError, InfrastructureError

log = logging.getLogger(__name__)


def read_to_end(settings: Settings, topic: str, partitions: int, *, idle_timeout_s: float = 30.0) -> list[Message]:
    """Every record of partitions ``0..partitions-1`` of ``topic``, in offset order per partition.

    Records in error are logged and skipped; otherwise as :func:`iter_to_end`.
    """
    return list(iter_to_end(settings, topic, partitions, idle_timeout_s=idle_timeout_s))


def iter_to_end(settings: Settings, topic: str, partitions: int, *, idle_timeout_s: float = 30.0,
                strict: bool = False) -> Iterator[Message]:
    """The records of partitions ``0..partitions-1`` of ``topic`` as they are fetched, in offset order per
    partition, until every partition has reported EOF.

    A record in error is logged and skipped, or with ``strict`` raises InfrastructureError. ConfigError if
    librdkafka refuses the settings; InfrastructureError if the topic's metadata cannot be fetched or no
    progress is made for ``idle_timeout_s``. The consumer is closed when the iteration ends or is abandoned.
    """
    consumer = _new_consumer(settings)
    try:
        try:
            # Leaders known before assign(): otherwise librdkafka retries the BEGINNING look-up after 500 ms.
            consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise InfrastructureError(f"cannot read {topic}: {exc}") from exc
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        yield from _consume_to_eof(consumer, topic, partitions, idle_timeout_s, strict)
    finally:
        consumer.close()


def _new_consumer(settings: Settings) -> Consumer:
    try:
        return Consumer(settings.librdkafka(
            {"fetch.wait.max.ms": settings.fetch_wait_max_ms},
            **{"group.id": f"choreo-reader-{uuid.uuid4().hex}",  # assign() only: the group never joins
               "enable.auto.commit": False, "enable.partition.eof": True, "auto.offset.reset": "earliest"}))
    except KafkaException as exc:
        raise ConfigError(f"invalid Kafka client settings: {exc}") from exc


def _consume_to_eof(consumer: Consumer, topic: str, partitions: int, idle_timeout_s: float,
                    strict: bool) -> Iterator[Message]:
    at_end: set[int] = set()
    deadline = time.monotonic() + idle_timeout_s
    while len(at_end) < partitions:
        batch = consumer.consume(1000, 0.05)  # returns after the timeout unless 1000 arrive: keep it short
        if batch:
            deadline = time.monotonic() + idle_timeout_s
        elif time.monotonic() > deadline:
            raise InfrastructureError(f"reading {topic}: no progress for {idle_timeout_s:.0f}s "
                                      f"({len(at_end)}/{partitions} partitions read to the end)")
        for message in batch:
            error = message.error()
            if error is None:
                at_end.discard(message.partition())
                yield message
            elif error.code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
            elif strict:
                raise InfrastructureError(f"cannot read {topic}: {error.str()}")
            else:
                log.warning("reading %s: %s", topic, error)
