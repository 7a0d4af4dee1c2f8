"""The registry's durable log: one compacted, single-partition Kafka topic (``Settings.registry_topic``).

Start-up replays it to its end (:mod:`choreo.kafka.reading`: PARTITION_EOF, never ListOffsets, which
Tansu answers wrongly). Appends are acknowledged
(acks=all, idempotent producer) before the caller applies them.

Single writer: exactly one registry process may write a topic. The log is read once, at start; a second
registry on the same topic would not see the first one's writes and could hand out the same id twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from choreo.config import Settings
from choreo.errors import ConfigError, InfrastructureError
from choreo.kafka.admin import TopicSpec, ensure_topics, partition_count
from choreo.kafka.reading import iter_to_end
from choreo.registry.errors import RegistryError, StoreError
from choreo.registry.records import Record, decode, encode

log = logging.getLogger(__name__)

# Nothing listening for this long is a wrong address, not a broker still starting.
_UNREACHABLE_AFTER_S = 3.0
_UNREACHABLE = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE}


class KafkaSchemaLog:
    """Append and replay registry records on ``topic``. Not thread-safe: the store serializes writers."""

    def __init__(self, settings: Settings, *, topic: str | None = None, timeout_s: float = 15.0) -> None:
        self.settings = settings
        self.topic = topic or settings.registry_topic
        self.timeout_s = timeout_s
        self._producer: Producer | None = None

    def open(self) -> KafkaSchemaLog:
        """Check the broker answers, create the topic if missing (compacted, 1 partition), start producing."""
        self._probe_broker()
        config = self.settings.librdkafka()
        spec = TopicSpec(self.topic, partitions=1, replication_factor=self.settings.topic_replication_factor,
                         config={"cleanup.policy": "compact"})
        ensure_topics(config, [spec], timeout_s=self.timeout_s)
        partitions = partition_count(config, self.topic, timeout_s=self.timeout_s)
        if partitions is None:  # deleted between creating and counting it
            raise InfrastructureError(f"topic {self.topic!r} does not exist")
        if partitions != 1:
            # Versions and ids are assigned in log order, which only one partition has.
            raise ConfigError(f"registry topic {self.topic!r} has {partitions} partitions; it must have 1")
        self._producer = self._new_producer()
        return self

    def _new_producer(self) -> Producer:
        # Our defaults first, so CHOREO_KAFKA_* pass-through options (e.g. message.timeout.ms) win.
        defaults = {"acks": "all", "enable.idempotence": True, "linger.ms": 0,
                    "message.timeout.ms": int(self.timeout_s * 1000)}
        producer = Producer(self.settings.librdkafka(defaults))
        # Learn the partition leader now, or the first write waits ~0.5 s for librdkafka to look it up.
        producer.list_topics(self.topic, timeout=self.timeout_s)
        return producer

    def _probe_broker(self) -> None:
        bootstrap = self.settings.bootstrap_servers
        down: list[KafkaError] = []
        admin = AdminClient(self.settings.librdkafka(**{"log_level": 0, "error_cb": down.append}))
        started = time.monotonic()
        while True:
            try:
                if admin.list_topics(timeout=0.5).brokers:
                    return
            except KafkaException:
                pass
            admin.poll(0)  # serves error_cb
            waited = time.monotonic() - started
            unreachable = any(error.code() in _UNREACHABLE for error in down)
            given_up = unreachable and waited > _UNREACHABLE_AFTER_S
            if given_up or waited > self.timeout_s:
                reason = f": {down[-1].str()}" if down else ""
                raise InfrastructureError(
                    f"cannot reach the Kafka broker at {bootstrap} (CHOREO_BOOTSTRAP_SERVERS) "
                    f"after {waited:.0f}s{reason}")

    def replay(self, apply: Callable[[Record], None]) -> int:
        """Feed every record from the beginning to ``apply``, up to the end; return how many were read.

        Malformed records and schemas that no longer parse are logged and skipped, never fatal; a read
        error, or no progress for ``timeout_s``, is an InfrastructureError.
        """
        count = 0
        for message in iter_to_end(self.settings, self.topic, 1, idle_timeout_s=self.timeout_s, strict=True):
            count += 1
            self._apply_one(apply, message.key(), message.value(), message.offset())
        return count

    def _apply_one(self, apply: Callable[[Record], None], key: Any, value: Any, offset: int) -> None:
        try:
            record = decode(key, value)
            if record is not None:
                apply(record)
        except (ValueError, KeyError, TypeError, RegistryError) as exc:
            log.warning("skipping registry record at offset %d of %s: %s", offset, self.topic, exc)

    def append(self, record: Record) -> None:
        """Produce ``record`` and wait for the broker's ack; StoreError (50001) if it is not acknowledged."""
        key, value = encode(record)
        outcome: list[KafkaError | None] = []
        try:
            if self._producer is None:
                self._producer = self._new_producer()
            self._producer.produce(self.topic, key=key, value=value,
                                   on_delivery=lambda err, _msg: outcome.append(err))
            self._producer.flush(self.timeout_s + 5)
            if not outcome:
                raise StoreError(f"no acknowledgement from {self.topic!r}")
            if outcome[0] is not None:
                raise StoreError(f"write to {self.topic!r} failed: {outcome[0].str()}")
        except (KafkaException, BufferError, StoreError) as exc:
            # An idempotent producer may be left fenced or stuck after a failure: start afresh next time.
            self._producer = None
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot write to {self.topic!r}: {exc}") from exc

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(5)
