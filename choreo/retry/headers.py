"""Retry and dead-letter headers (SPEC §3) and the topic names they route between."""

from __future__ import annotations

import time
import traceback

from confluent_kafka import Message

RETRY_ATTEMPT = "retry-attempt"
RETRY_NOT_BEFORE = "retry-not-before"
RETRY_ORIGINAL_TOPIC = "retry-original-topic"
RETRY_ORIGINAL_PARTITION = "retry-original-partition"
RETRY_ORIGINAL_OFFSET = "retry-original-offset"
DLQ_REASON = "dlq-reason"
DLQ_ERROR_TYPE = "dlq-error-type"
DLQ_ERROR_MESSAGE = "dlq-error-message"
DLQ_TRACEBACK = "dlq-traceback"
DLQ_ATTEMPTS = "dlq-attempts"
DLQ_FIRST_FAILURE = "dlq-first-failure"
DLQ_LAST_FAILURE = "dlq-last-failure"
DLQ_SERVICE = "dlq-service"
DLQ_REPLAYED_AT = "dlq-replayed-at"
DLQ_REPLAY_COUNT = "dlq-replay-count"

# Headers rewritten on each hop; everything else (CloudEvents, correlation, replay count) travels on.
_PER_HOP = {RETRY_ATTEMPT, RETRY_NOT_BEFORE, DLQ_REASON, DLQ_ERROR_TYPE, DLQ_ERROR_MESSAGE, DLQ_TRACEBACK,
            DLQ_ATTEMPTS, DLQ_LAST_FAILURE, DLQ_SERVICE}
MAX_TRACEBACK_CHARS = 4000
MAX_MESSAGE_CHARS = 1000


def retry_topic(service: str, retry: int) -> str:
    return f"{service}.retry.{retry}"


def dlq_topic(service: str) -> str:
    return f"{service}.dlq"


def now_ms() -> int:
    return int(time.time() * 1000)


def header_int(headers: dict[str, bytes], name: str, default: int) -> int:
    value = headers.get(name)
    try:
        return int(value.decode()) if value is not None else default
    except ValueError:
        return default


def carried_headers(message: Message) -> list[tuple[str, bytes]]:
    """The record's headers minus the per-hop retry/DLQ ones."""
    return [(k, v) for k, v in (message.headers() or []) if k not in _PER_HOP and v is not None]


def original_position(message: Message, headers: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """``retry-original-*`` of the first delivery: kept if present, else this record's position."""
    if RETRY_ORIGINAL_TOPIC in headers:
        return []  # already among the carried headers
    return [(RETRY_ORIGINAL_TOPIC, message.topic().encode()),
            (RETRY_ORIGINAL_PARTITION, str(message.partition()).encode()),
            (RETRY_ORIGINAL_OFFSET, str(message.offset() if message.offset() is not None else -1).encode())]


def failure_headers(error: BaseException, *, reason: str, attempts: int, service: str,
                    first_failure_ms: int | None, at_ms: int) -> list[tuple[str, bytes]]:
    """The dead-letter record of a failure: what, why, how often, since when (traceback trimmed).

    ``first_failure_ms`` is None when the record already carries ``dlq-first-failure`` from a retry.
    """
    trace = "".join(traceback.format_exception(error))[-MAX_TRACEBACK_CHARS:]
    return [
        (DLQ_REASON, reason.encode()), (DLQ_ERROR_TYPE, type(error).__qualname__.encode()),
        (DLQ_ERROR_MESSAGE, str(error)[:MAX_MESSAGE_CHARS].encode(errors="replace")),
        (DLQ_TRACEBACK, trace.encode(errors="replace")), (DLQ_ATTEMPTS, str(attempts).encode()),
        (DLQ_LAST_FAILURE, str(at_ms).encode()), (DLQ_SERVICE, service.encode()),
    ] + ([] if first_failure_ms is None else [(DLQ_FIRST_FAILURE, str(first_failure_ms).encode())])
