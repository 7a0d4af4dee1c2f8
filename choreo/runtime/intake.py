"""Intake: consumed messages → the records this service handles, the offsets to store, the pauses.

Intake is not a stage: it *creates* the records the stages walk. One pass over the batch:
- consume errors are dropped (partition EOF silently, others logged);
- a retry record not yet due pauses its partition: it and everything after it in that partition are
  left for later, and the stored offset stops just before it;
- ``identify`` reads the envelope's id and type from the headers only; a record without them is poison;
- the route is looked up by ``ce_type`` (a fired timer's by its ``choreo-timer`` header); records of
  other event types on a shared topic are skipped undecoded;
- fired timers (see :mod:`choreo.runtime.timers`) arrive as records without an offset: they are
  handled like any record but store none.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, TopicPartition

from choreo.envelope import EnvelopeError, identify
from choreo.errors import DeserializationError
from choreo.retry.headers import RETRY_ATTEMPT, RETRY_NOT_BEFORE, header_int, now_ms
from choreo.runtime.pipeline import Rec

log = logging.getLogger(__name__)

TIMER_HEADER = "choreo-timer"  # on a fired timer's record: the timer's name (routes it to its handler)


@dataclass(frozen=True)
class Pause:
    """A retry record not yet due: pause its partition and rewind to it until ``due_ms``."""

    topic: str
    partition: int
    offset: int
    due_ms: int


RouteLookup = Callable[[str, dict[str, bytes]], Any]  # (ce_type, headers) → route or None
PoisonHook = Callable[[Message, DeserializationError], None]


class Intake:
    """Turns one batch of messages into records; counts consumed events per (topic, type)."""

    def __init__(self, service: str, route_of: RouteLookup, on_poison: PoisonHook) -> None:
        self.service = service
        self.route_of = route_of
        self.on_poison = on_poison
        self.consumed: Counter[tuple[str, str]] = Counter()

    def take(self, messages: Sequence[Message]) -> tuple[list[Rec], list[TopicPartition], list[Pause]]:
        """Records to walk, offsets to store once the batch is settled (last + 1 per partition), pauses."""
        recs: list[Rec] = []
        pauses: list[Pause] = []
        last: dict[tuple[str, int], int] = {}
        paused: set[tuple[str, int]] = set()
        route_of, consumed = self.route_of, self.consumed
        now = now_ms()
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error service=%s error=%s", self.service, error)
                continue
            position = (message.topic(), message.partition())
            if position in paused:
                continue
            raw_headers = message.headers()
            headers = dict(raw_headers) if raw_headers else {}  # in C; identify() copes with None values
            if RETRY_NOT_BEFORE in headers:
                due = header_int(headers, RETRY_NOT_BEFORE, 0)
                if due > now:
                    paused.add(position)
                    pauses.append(Pause(*position, message.offset(), due))
                    continue
            offset = message.offset()
            if offset is not None:  # fired timers (offset None) are in no partition's log: nothing to store
                last[position] = offset
            try:
                event_id, event_type = identify(headers)
            except EnvelopeError as exc:
                self.on_poison(message, DeserializationError(str(exc), record=message))
                continue
            consumed[(position[0], event_type)] += 1
            route = route_of(event_type, headers)
            if route is None:
                continue  # another event type on a shared topic: not ours, nothing to decode
            attempt = header_int(headers, RETRY_ATTEMPT, 1) if RETRY_ATTEMPT in headers else 1
            recs.append(Rec(message, event_id, headers, route, attempt))
        offsets = [TopicPartition(t, p, offset + 1) for (t, p), offset in last.items()]
        return recs, offsets, pauses
