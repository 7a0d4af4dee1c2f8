"""Records → facts: a domain event, a task record, or a dead letter's position.

Only headers are read, except where a declaration asks for a payload field: a root event's
``job_deadline`` and a terminal event's ``reason_field`` (decoded through the registry with
:class:`~choreo.serde.avro.AvroEventSerde`, only those fields kept). Nothing else of a payload, no error
text and no header value but ids, types and times ever reaches a fact.

Records that are not facts (no ``ce_id``/``ce_type``, a value that is not a task record) are skipped and
counted in :attr:`Intake.skipped`; an undecodable payload still gives its fact, without the field. An
unreachable registry raises :class:`~choreo.errors.InfrastructureError`: the batch is tried again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from choreo.envelope import CE_SOURCE, CORRELATION_ID, REQUEST_ID, EnvelopeError, headers_to_dict, parse_envelope
from choreo.errors import DeserializationError
from choreo.progress.flow import Flow
from choreo.progress.model import DeadLetterFact, EventFact, TaskFact, parse_time_ms, reason_code
from choreo.retry.headers import DLQ_SERVICE
from choreo.serde.avro import AvroEventSerde
from choreo.tasks import TaskRecordError, decode_task

log = logging.getLogger(__name__)


@dataclass
class Facts:
    """The facts of one batch of records."""

    events: list[EventFact] = field(default_factory=list)
    tasks: list[TaskFact] = field(default_factory=list)
    dead_letters: list[DeadLetterFact] = field(default_factory=list)

    @property
    def jobs(self) -> set[str]:
        """Jobs whose resource may change (dead letters alone change no resource, only escalation)."""
        return {e.job_id for e in self.events} | {t.job_id for t in self.tasks}

    def __len__(self) -> int:
        return len(self.events) + len(self.tasks) + len(self.dead_letters)


class Intake:
    """Turns consumed messages into :class:`Facts`. One per consumer thread (the serde caches are not shared)."""

    def __init__(self, flow: Flow, serde: AvroEventSerde, tasks_topic: str) -> None:
        self.flow = flow
        self.serde = serde
        self.tasks_topic = tasks_topic
        self._dlq = {topic: topic[: -len(".dlq")] for topic in flow.dlq_topics}
        self.skipped = 0

    def facts(self, messages: list[Message]) -> Facts:
        facts = Facts()
        for message in messages:
            if message.error() is not None:
                continue
            topic = message.topic()
            if topic == self.tasks_topic:
                task = self._task(message)
                if task is not None:
                    facts.tasks.append(task)
            elif topic in self._dlq:
                dead = self._dead_letter(message, self._dlq[topic])
                if dead is not None:
                    facts.dead_letters.append(dead)
            else:
                headers = headers_to_dict(message.headers())
                event = self._event(message, headers)
                if event is not None:
                    facts.events.append(event)
                    implied = _implied_task(headers, event)
                    if implied is not None:
                        facts.tasks.append(implied)
        return facts

    def _task(self, message: Message) -> TaskFact | None:
        try:
            r = decode_task(message.value())
        except TaskRecordError as exc:
            self._skip(message, str(exc))
            return None
        return TaskFact(task_id=r.task, job_id=r.job, service=r.service, status=r.status, attempt=r.attempt,
                        input_id=r.input, input_type=r.type, started_ms=r.started, stopped_ms=r.stopped)

    def _dead_letter(self, message: Message, service: str) -> DeadLetterFact | None:
        headers = headers_to_dict(message.headers())
        try:
            envelope = parse_envelope(headers)
        except EnvelopeError as exc:  # poison that never had an envelope: nothing to tie it to a job
            self._skip(message, str(exc))
            return None
        named = headers.get(DLQ_SERVICE)
        return DeadLetterFact(topic=message.topic(), partition=message.partition(), offset=message.offset(),
                              job_id=envelope.correlation_id,
                              service=named.decode(errors="replace") if named else service,
                              event_id=envelope.event_id)

    def _event(self, message: Message, headers: dict[str, bytes]) -> EventFact | None:
        try:
            envelope = parse_envelope(headers)
        except EnvelopeError as exc:
            self._skip(message, str(exc))
            return None
        event_type, is_root = envelope.event_type, envelope.causation_id is None
        time_ms = parse_time_ms(envelope.time)
        if time_ms is None:
            kind, stamp = message.timestamp()
            time_ms = stamp if kind and stamp > 0 else None
        end = self.flow.ends_job(event_type)
        deadline_ms, reason = None, end.reason if end else None
        if self.flow.needs_payload(event_type, is_root):
            event = self._decode(message, event_type)
            if event is not None:
                deadline_field = self.flow.deadline_field(event_type)
                if is_root and deadline_field:
                    deadline_ms = _ms(getattr(event, deadline_field, None))
                if end is not None and end.reason_field:
                    reason = getattr(event, end.reason_field, None)
        # A job id is the correlation-id; parse_envelope falls back to the event's own id without one.
        job_id = envelope.correlation_id if CORRELATION_ID in headers else envelope.event_id
        return EventFact(event_id=envelope.event_id, job_id=job_id, event_type=event_type,
                         causation_id=envelope.causation_id, time_ms=time_ms, deadline_ms=deadline_ms,
                         end_status=end.status if end else None, end_reason=reason_code(reason))

    def _decode(self, message: Message, event_type: str) -> Any:
        try:
            return self.serde.decode(self.flow.bindings[event_type], message.value())
        except DeserializationError as exc:
            log.warning("progress: cannot decode %s at %s[%d]@%d: %s", event_type, message.topic(),
                        message.partition(), message.offset(), type(exc).__name__)
            return None

    def _skip(self, message: Message, why: str) -> None:
        self.skipped += 1
        log.warning("progress: skipped a record at %s[%d]@%d: %s", message.topic(), message.partition(),
                    message.offset(), why[:120])


def _ms(value: object) -> int | None:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    return None


def _implied_task(headers: dict[str, bytes], event: EventFact) -> TaskFact | None:
    """The completion of the step that emitted ``event``: the runtime sends no task record for a step
    whose outputs say it (``request-id`` = the task, ``ce_source`` = the service, ``causation-id`` =
    its input). Attempt 0 means "not stated": the model counts the attempts from the retry records."""
    request, source = headers.get(REQUEST_ID), headers.get(CE_SOURCE)
    if event.causation_id is None or not request or not source:
        return None  # a root event: no step of a service emitted it
    stamp = event.time_ms or 0
    return TaskFact(task_id=request.decode(errors="replace"), job_id=event.job_id,
                    service=source.decode(errors="replace"), status="completed", attempt=0,
                    input_id=event.causation_id, input_type="", started_ms=stamp, stopped_ms=stamp)
