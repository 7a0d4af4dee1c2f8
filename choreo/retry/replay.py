"""Replaying dead letters through their service's retry path, and the audit trail of every replay run.

A replayed dead letter is produced to ``<service>.retry.1`` with its key, value and original headers,
minus the ``dlq-*`` and per-hop retry headers, plus ``retry-attempt: 1`` (a fresh attempt budget: the
router retries attempt ``n`` on ``retry.<n>`` and dead-letters once ``n`` exceeds the policy's retries),
``retry-not-before: now``, ``dlq-replayed-at`` and ``dlq-replay-count`` (previous + 1). Only the owning
service reads its retry topics, so no other service is re-triggered; the service's idempotency store
drops events it already handled. With ``ordered_retries`` a replayed event of a blocked key is parked
behind the blocker like any other event of that key.

Every run, dry runs included, appends one JSON record to ``<service>.dlq.history`` (one partition, so
runs keep their order): who, when, filters, counts, outcome and the DLQ offsets acknowledged as
replayed. Only acknowledged offsets are recorded, so a later run skips exactly those — from failed or
interrupted runs too — unless ``again`` is set.
Thread-safety: none needed; a run uses its own producer and consumers.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from confluent_kafka import KafkaException

from choreo.config import Settings
from choreo.errors import ChoreoError, ConfigError
from choreo.kafka.admin import TopicSpec, ensure_topics, partition_count
from choreo.kafka.producer import OutgoingRecord, ReliableProducer
from choreo.kafka.reading import read_to_end
from choreo.retry import headers as h
from choreo.retry.dlq import DeadLetter, DeadLetterFilter, read_dead_letters

SkipReason = Literal["already-replayed", "poison", "max-replays"]
FLUSH_EVERY = 1000  # records acknowledged per chunk: a failed run still knows what it replayed
_DROPPED = {h.RETRY_ATTEMPT, h.RETRY_NOT_BEFORE}


def history_topic(service: str) -> str:
    return f"{h.dlq_topic(service)}.history"


# -- pure helpers ---------------------------------------------------------------------------------

def replay_headers(dead: DeadLetter, now_ms: int) -> list[tuple[str, bytes]]:
    """The headers a replayed dead letter travels with (order of the kept ones preserved)."""
    kept = [(k, v) for k, v in dead.headers if not k.startswith("dlq-") and k not in _DROPPED]
    return kept + [
        (h.RETRY_ATTEMPT, b"1"), (h.RETRY_NOT_BEFORE, str(now_ms).encode()),
        (h.DLQ_REPLAYED_AT, str(now_ms).encode()), (h.DLQ_REPLAY_COUNT, str(dead.replay_count + 1).encode()),
    ]


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, bursts of up to ``burst``. One thread."""

    def __init__(self, rate: float, burst: float = 1.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ConfigError("rate must be > 0 events/s and burst >= 1")
        self.rate, self.burst = rate, burst
        self._clock, self._sleep = clock, sleep
        self._tokens, self._last = burst, clock()

    def acquire(self) -> None:
        """Take one token, sleeping until one is available."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            self._sleep((1 - self._tokens) / self.rate)
            self._tokens, self._last = 1.0, self._clock()
        self._tokens -= 1


def to_ranges(offsets: Iterable[int]) -> list[list[int]]:
    """``[1, 2, 3, 7]`` → ``[[1, 3], [7, 7]]`` (inclusive ranges keep audit records small)."""
    ranges: list[list[int]] = []
    for offset in sorted(set(offsets)):
        if ranges and offset == ranges[-1][1] + 1:
            ranges[-1][1] = offset
        else:
            ranges.append([offset, offset])
    return ranges


def from_ranges(ranges: Iterable[Sequence[int]]) -> list[int]:
    return [o for first, last in ranges for o in range(first, last + 1)]


# -- planning -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReplayOptions:
    """How to replay: ``limit`` caps the records sent (skipped ones do not count); ``rate`` is events/s."""

    limit: int | None = None
    include_poison: bool = False
    max_replays: int = 3
    again: bool = False
    dry_run: bool = False
    rate: float | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError("--limit must be at least 1")
        if self.max_replays < 1:
            raise ConfigError("--max-replays must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise ConfigError("--rate must be a positive number of events per second")


@dataclass(frozen=True)
class Skip:
    dead: DeadLetter
    reason: SkipReason


@dataclass
class ReplayPlan:
    """What a run will do: ``selected`` (in order) is replayed, ``skipped`` is not, with reasons."""

    matched: int
    selected: list[DeadLetter]
    skipped: list[Skip]

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skipped))


def plan_replay(dead_letters: Iterable[DeadLetter], flt: DeadLetterFilter, options: ReplayOptions,
                replayed_before: set[tuple[int, int]] | None = None) -> ReplayPlan:
    """Pick what to replay: filter match, then skip already-replayed positions (unless ``again``),
    poison (unless ``include_poison``) and records replayed ``max_replays`` times; stop at ``limit``."""
    plan = ReplayPlan(matched=0, selected=[], skipped=[])
    for dead in dead_letters:
        if options.limit is not None and len(plan.selected) >= options.limit:
            break
        if not flt.matches(dead):
            continue
        plan.matched += 1
        if not options.again and replayed_before and dead.position in replayed_before:
            plan.skipped.append(Skip(dead, "already-replayed"))
        elif dead.is_poison and not options.include_poison:
            plan.skipped.append(Skip(dead, "poison"))
        elif dead.replay_count >= options.max_replays:
            plan.skipped.append(Skip(dead, "max-replays"))
        else:
            plan.selected.append(dead)
    return plan


# -- the audit trail ------------------------------------------------------------------------------

def _who() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class ReplayRun:
    """One record of ``<service>.dlq.history``. ``offsets``: partition → inclusive ranges acknowledged."""

    run_id: str
    service: str
    started_ms: int
    finished_ms: int
    who: str
    dry_run: bool
    filters: dict[str, Any]
    options: dict[str, Any]
    matched: int
    selected: int
    replayed: int
    skipped: dict[str, int]
    outcome: Literal["ok", "failed"]
    error: str | None = None
    offsets: dict[str, list[list[int]]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ReplayRun:
        data = json.loads(raw)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    def positions(self) -> set[tuple[int, int]]:
        return {(int(p), o) for p, ranges in self.offsets.items() for o in from_ranges(ranges)}


def read_history(settings: Settings, service: str) -> list[ReplayRun]:
    """Every recorded run of ``service``, oldest first ([] before the first run). Unreadable records are skipped."""
    topic = history_topic(service)
    partitions = partition_count(settings.librdkafka(), topic)
    if partitions is None:
        return []
    runs = []
    for message in read_to_end(settings, topic, partitions):
        try:
            runs.append(ReplayRun.from_json(message.value() or b""))
        except (ValueError, TypeError):
            continue
    return sorted(runs, key=lambda r: r.started_ms)


def write_history(settings: Settings, run: ReplayRun, producer: ReliableProducer | None = None) -> None:
    """Append ``run`` to ``<service>.dlq.history`` (created with one partition if missing) and wait for the ack."""
    topic = history_topic(run.service)
    ensure_topics(settings.librdkafka(), [TopicSpec(topic, 1, settings.topic_replication_factor)])
    producer = producer or new_producer(settings)
    producer.produce(OutgoingRecord(topic, run.run_id.encode(), run.to_json(), []))
    producer.flush()


def new_producer(settings: Settings) -> ReliableProducer:
    """The project's reliable producer; ConfigError for librdkafka options it refuses."""
    try:
        return ReliableProducer(settings.librdkafka())
    except KafkaException as exc:
        raise ConfigError(f"invalid Kafka client settings: {exc}") from exc


def replayed_positions(runs: Iterable[ReplayRun]) -> set[tuple[int, int]]:
    """DLQ positions earlier runs acknowledged as replayed (dry runs replay nothing)."""
    return {pos for run in runs if not run.dry_run for pos in run.positions()}


# -- the run --------------------------------------------------------------------------------------

@dataclass
class ReplayReport:
    """The outcome of :func:`replay`: the plan, what was acknowledged, and the audit record written."""

    plan: ReplayPlan
    replayed: list[DeadLetter]
    run: ReplayRun
    audit_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.run.outcome == "ok" and self.audit_error is None


def replay(settings: Settings, service: str, flt: DeadLetterFilter | None = None,
           options: ReplayOptions | None = None, *, on_plan: Callable[[ReplayPlan], None] | None = None,
           on_progress: Callable[[DeadLetter], None] | None = None) -> ReplayReport:
    """Replay ``service``'s matching dead letters to ``<service>.retry.1`` and record the run.

    ConfigError (nothing sent, nothing recorded) if the DLQ or ``<service>.retry.1`` does not exist.
    A produce failure does not raise: the report's run has outcome ``failed`` and lists only what was
    acknowledged. ``on_plan`` is called once before sending, ``on_progress`` after each record is queued.
    """
    flt, options = flt or DeadLetterFilter(), options or ReplayOptions()
    started = h.now_ms()
    # Made first: an idempotent producer needs ~0.5 s to get its producer id, overlapped with the reads.
    producer = new_producer(settings)
    dead_letters = read_dead_letters(settings, service)
    plan = plan_replay(dead_letters, flt, options, replayed_positions(read_history(settings, service)))
    target = h.retry_topic(service, 1)
    if not options.dry_run and plan.selected and partition_count(settings.librdkafka(), target) is None:
        raise ConfigError(f"cannot replay: {target} does not exist ({service} has no retry topic; "
                          f"start the service once, and give it a retry policy with at least one retry)")
    if on_plan is not None:
        on_plan(plan)
    replayed: list[DeadLetter] = []
    error: str | None = None
    if not options.dry_run and plan.selected:
        try:
            _send(producer, target, plan.selected, options.rate, replayed, on_progress)
        except ChoreoError as exc:
            error = str(exc)
    run = ReplayRun(
        run_id=str(uuid.uuid4()), service=service, started_ms=started, finished_ms=h.now_ms(), who=_who(),
        dry_run=options.dry_run, filters=flt.describe(), options=asdict(options), matched=plan.matched,
        selected=len(plan.selected), replayed=len(replayed), skipped=plan.skipped_by_reason(),
        outcome="failed" if error else "ok", error=error, offsets=_offsets(replayed))
    report = ReplayReport(plan, replayed, run)
    try:
        # After a produce failure the producer may be unusable (fenced): record the run with a new one.
        write_history(settings, run, producer if error is None else None)
    except ChoreoError as exc:
        report.audit_error = f"could not record the run in {history_topic(service)}: {exc}"
    return report


def _send(producer: ReliableProducer, target: str, selected: list[DeadLetter], rate: float | None,
          replayed: list[DeadLetter], on_progress: Callable[[DeadLetter], None] | None) -> None:
    """Produce in chunks; after each acknowledged chunk extend ``replayed``. Raises ProduceError, or
    ChoreoError on Ctrl-C once what was already queued is acknowledged (so the run is recorded)."""
    bucket = TokenBucket(rate) if rate else None
    pending: list[DeadLetter] = []
    try:
        for dead in selected:
            if bucket is not None:
                bucket.acquire()
                producer.poll()
            producer.produce(OutgoingRecord(target, dead.key, dead.value, replay_headers(dead, h.now_ms())))
            pending.append(dead)
            if on_progress is not None:
                on_progress(dead)
            if len(pending) >= FLUSH_EVERY:
                producer.flush()
                replayed.extend(pending)
                pending = []
    except KeyboardInterrupt:
        producer.flush()
        replayed.extend(pending)
        raise ChoreoError("interrupted (Ctrl-C)") from None
    producer.flush()
    replayed.extend(pending)


def _offsets(replayed: list[DeadLetter]) -> dict[str, list[list[int]]]:
    by_partition: dict[int, list[int]] = {}
    for dead in replayed:
        by_partition.setdefault(dead.partition, []).append(dead.offset)
    return {str(p): to_ranges(offsets) for p, offsets in sorted(by_partition.items())}
