"""Reading dead letters: ``<service>.dlq`` parsed into :class:`DeadLetter` records, and filters over them.

A dead letter is the failed record unchanged (key, value, CloudEvents headers) plus the ``dlq-*`` and
``retry-original-*`` headers of SPEC §3. Reading never commits offsets and joins no group: the topic is
read from the beginning of every partition up to EOF with :func:`choreo.kafka.reading.read_to_end`.
"""

from __future__ import annotations

import heapq
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from confluent_kafka import Message
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from choreo.config import Settings
from choreo.envelope import CE_ID, CE_TYPE, CORRELATION_ID
from choreo.errors import ConfigError
from choreo.kafka.admin import partition_count
from choreo.kafka.reading import read_to_end
from choreo.retry import headers as h
from choreo.serde.avro import HEADER_SIZE, MAGIC_BYTE, is_transport_error

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# -- pure helpers ---------------------------------------------------------------------------------

def parse_time(text: str, *, now: datetime | None = None, option: str = "time") -> int:
    """Epoch ms of ``text``: a duration back from now (``30m``, ``1h``, ``2d``, ``90s``, ``1w``) or an
    ISO-8601 date/time (``2024-05-01``, ``2024-05-01T12:00``, ``…Z``, ``…+02:00``; naive = local time).

    ConfigError naming ``option`` for anything else.
    """
    now = now or datetime.now().astimezone()
    relative = _DURATION.match(text)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2).lower()
        return int((now - timedelta(seconds=amount * _UNIT_SECONDS[unit])).timestamp() * 1000)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r} is neither an ISO-8601 time (2024-05-01T12:00) "
                          f"nor a duration (30m, 1h, 2d)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive: the operator's local time
    return int(moment.timestamp() * 1000)


def format_ms(epoch_ms: int | None) -> str:
    """``2024-05-01 12:03:04`` in local time ('' for None)."""
    if epoch_ms is None:
        return ""
    return datetime.fromtimestamp(epoch_ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


# -- the record -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeadLetter:
    """One record of ``<service>.dlq``: where it sits, its raw key/value/headers, and typed header views."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None = None

    @classmethod
    def from_message(cls, message: Message) -> DeadLetter:
        kind, stamp = message.timestamp()
        headers = message.headers()
        return cls(topic=message.topic(), partition=message.partition(), offset=message.offset(),
                   key=message.key(), value=message.value(),
                   headers=tuple((k, v) for k, v in headers if v is not None) if headers else (),
                   timestamp_ms=stamp if kind != 0 else None)

    @cached_property
    def _raw(self) -> dict[str, bytes]:
        return dict(self.headers)  # the last of a repeated name wins

    @cached_property
    def header_map(self) -> dict[str, str]:
        """Headers decoded as UTF-8 (undecodable bytes replaced); the last of a repeated name wins."""
        return {k: v.decode(errors="replace") for k, v in self._raw.items()}

    def header(self, name: str) -> str | None:
        """One header as text (decoded on demand: filters touch a few of a dozen headers)."""
        value = self._raw.get(name)
        return None if value is None else value.decode(errors="replace")

    def _int(self, name: str) -> int | None:
        try:
            return int(self._raw[name])
        except (KeyError, ValueError):
            return None

    @property
    def position(self) -> tuple[int, int]:
        return self.partition, self.offset

    @property
    def key_text(self) -> str:
        return "" if self.key is None else self.key.decode(errors="replace")

    @property
    def event_id(self) -> str | None:
        return self.header(CE_ID)

    @property
    def event_type(self) -> str | None:
        return self.header(CE_TYPE)

    @property
    def correlation_id(self) -> str | None:
        return self.header(CORRELATION_ID)

    @property
    def reason(self) -> str:
        return self.header(h.DLQ_REASON) or ""

    @property
    def error_type(self) -> str:
        return self.header(h.DLQ_ERROR_TYPE) or ""

    @property
    def error_message(self) -> str:
        return self.header(h.DLQ_ERROR_MESSAGE) or ""

    @property
    def traceback(self) -> str:
        return self.header(h.DLQ_TRACEBACK) or ""

    @property
    def attempts(self) -> int | None:
        return self._int(h.DLQ_ATTEMPTS)

    @property
    def last_failure_ms(self) -> int | None:
        """``dlq-last-failure``, falling back to the record's timestamp."""
        value = self._int(h.DLQ_LAST_FAILURE)
        return value if value is not None else self.timestamp_ms

    @property
    def replay_count(self) -> int:
        return self._int(h.DLQ_REPLAY_COUNT) or 0

    @property
    def original(self) -> str:
        """``topic[partition]@offset`` of the first delivery ('' if unknown)."""
        topic = self.header(h.RETRY_ORIGINAL_TOPIC)
        if topic is None:
            return ""
        partition, offset = self.header(h.RETRY_ORIGINAL_PARTITION), self.header(h.RETRY_ORIGINAL_OFFSET)
        return f"{topic}[{partition or '?'}]@{offset or '?'}"

    @property
    def is_poison(self) -> bool:
        return self.reason == "poison"


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters an operator means. Empty fields match everything; set fields must all match.

    ``event_type`` and ``error_type`` match the full name or its last dotted part (``Ping`` matches
    ``io.choreo.test.Ping``); ``since_ms``/``until_ms`` bound ``dlq-last-failure`` (inclusive).
    """

    key: str | None = None
    correlation_id: str | None = None
    event_type: str | None = None
    error_type: str | None = None
    reason: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    @classmethod
    def parse(cls, *, since: str | None = None, until: str | None = None, now: datetime | None = None,
              **exact: str | None) -> DeadLetterFilter:
        """Build from command-line strings; ConfigError for a bad time or an empty range."""
        since_ms = parse_time(since, now=now, option="--since") if since else None
        until_ms = parse_time(until, now=now, option="--until") if until else None
        if since_ms is not None and until_ms is not None and since_ms > until_ms:
            raise ConfigError(f"--since {since} is after --until {until}")
        return cls(since_ms=since_ms, until_ms=until_ms, **exact)

    def matches(self, dead: DeadLetter) -> bool:
        if self.key is not None and dead.key_text != self.key:
            return False
        if self.correlation_id is not None and dead.correlation_id != self.correlation_id:
            return False
        if self.event_type is not None and self.event_type not in (dead.event_type, _short(dead.event_type or "")):
            return False
        if self.error_type is not None and self.error_type not in (dead.error_type, _short(dead.error_type)):
            return False
        if self.reason is not None and dead.reason != self.reason:
            return False
        when = dead.last_failure_ms
        if self.since_ms is not None and (when is None or when < self.since_ms):
            return False
        return not (self.until_ms is not None and (when is None or when > self.until_ms))

    def describe(self) -> dict[str, str | int]:
        """The set fields, for the audit trail."""
        return {name: value for name, value in vars(self).items() if value is not None}


# -- reading --------------------------------------------------------------------------------------

def read_dead_letters(settings: Settings, service: str) -> list[DeadLetter]:
    """Every dead letter of ``service``, oldest first.

    Partitions are merged by ``dlq-last-failure`` while each keeps its offset order, so one key's dead
    letters (one partition) stay in the order they failed. ConfigError if ``<service>.dlq`` does not exist.
    """
    topic = h.dlq_topic(service)
    partitions = partition_count(settings.librdkafka(), topic)
    if partitions is None:
        raise ConfigError(f"no dead letters for {service} (topic {topic} does not exist)")
    by_partition: dict[int, list[DeadLetter]] = {}
    for message in read_to_end(settings, topic, partitions):
        by_partition.setdefault(message.partition(), []).append(DeadLetter.from_message(message))
    return list(heapq.merge(*by_partition.values(),
                            key=lambda d: (d.last_failure_ms or 0, d.partition, d.offset)))


def select(dead_letters: Iterable[DeadLetter], flt: DeadLetterFilter, limit: int | None = None) -> list[DeadLetter]:
    """The first ``limit`` dead letters matching ``flt``, in the given order."""
    chosen: list[DeadLetter] = []
    for dead in dead_letters:
        if limit is not None and len(chosen) >= limit:
            break
        if flt.matches(dead):
            chosen.append(dead)
    return chosen


def find(dead_letters: Iterable[DeadLetter], offset: int, partition: int | None = None) -> DeadLetter:
    """The dead letter at ``partition:offset``; without a partition the offset must be unambiguous."""
    hits = [d for d in dead_letters if d.offset == offset and (partition is None or d.partition == partition)]
    if not hits:
        where = f"partition {partition} offset {offset}" if partition is not None else f"offset {offset}"
        raise ConfigError(f"no dead letter at {where}")
    if len(hits) > 1:
        parts = ", ".join(str(d.partition) for d in hits)
        raise ConfigError(f"offset {offset} exists in partitions {parts}: pass --partition")
    return hits[0]



@dataclass(frozen=True)
class DecodedPayload:
    """A dead letter's value decoded with its writer schema, or why that was not possible."""

    record: Any | None
    error: str | None
    schema_id: int | None = None


def decode_payload(settings: Settings, dead: DeadLetter) -> DecodedPayload:
    """Decode the value with the writer schema its id names (no reader schema). Never raises:
    poison records, unknown schema ids and an unreachable registry come back as ``error``."""
    value = dead.value
    if value is None:
        return DecodedPayload(None, "the value is null")
    if len(value) < HEADER_SIZE or value[0] != MAGIC_BYTE:
        return DecodedPayload(None, f"not in the Confluent Avro wire format ({len(value)} bytes, "
                                    f"first byte {value[:1]!r})")
    schema_id = int.from_bytes(value[1:HEADER_SIZE], "big")
    topic = dead.header(h.RETRY_ORIGINAL_TOPIC) or dead.topic
    try:
        deserializer = AvroDeserializer(SchemaRegistryClient(settings.registry_client_config()))
        record = deserializer(value, SerializationContext(topic, MessageField.VALUE))
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return DecodedPayload(None, f"unknown schema id {schema_id}", schema_id)
        return DecodedPayload(None, f"schema registry error: {exc}", schema_id)
    except Exception as exc:  # noqa: BLE001 - a corrupt payload or a down registry must still be showable
        if is_transport_error(exc):
            return DecodedPayload(None, f"schema registry unreachable at {settings.schema_registry_url}: "
                                        f"{exc or type(exc).__name__}", schema_id)
        return DecodedPayload(None, f"cannot decode Avro value: {type(exc).__name__}: {exc}", schema_id)
    return DecodedPayload(record, None, schema_id)
