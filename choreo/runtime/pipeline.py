"""The per-record path of a batch as a list of named stages (``intake → dedupe → key-order → decode → handle``).

Each concern of the path is one :class:`Stage` that plugs into the list :func:`build_stages` returns; a
feature the service does not use is absent from the list, not a branch on the hot path. A stage may:

- ``begin(recs)``: once per batch, before any record — batched reads (one store call per batch);
- ``enter(rec) -> bool``: the forward walk; ``False`` stops the walk for that record, and ``rec.status``
  says why (duplicate, parked, handled, retry, dead);
- ``leave(rec)``: the backward walk, for every record, stopped ones included (e.g. ordering releases a
  key whichever way its blocker ended).

Only overridden hooks are called. Records are walked one after another in the order consumed, so a key's
events keep partition order. Wrappers around *one handler call* (timing, user code) stay the handler
chain's middleware (``Service.middleware``); stages are for what needs the batch (dedupe, ordering,
failure routing). Threads: the consumer thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Message


class Status:
    """Where a record's walk ended (plain ints: compared per record)."""

    NEW = 0
    DUPLICATE = 1  # already processed: skipped
    PARKED = 2  # waits behind its key's blocker (ordered retries)
    HANDLED = 3  # handled (or a join part absorbed); its outputs are queued
    RETRY = 4  # sent to a retry topic
    DEAD = 5  # dead-lettered (poison or exhausted)


class Rec:
    """One record on its way through the stages (slots: one is built per consumed record)."""

    __slots__ = ("message", "event_id", "headers", "route", "attempt", "status", "event", "request_id", "emitted",
                 "_key")

    def __init__(self, message: Message, event_id: str, headers: dict[str, bytes], route: Any,
                 attempt: int) -> None:
        self.message = message
        self.event_id = event_id
        self.headers = headers
        self.route = route
        self.attempt = attempt
        self.status = Status.NEW
        self.event: Any = None  # the decoded event, once the decode stage ran
        self.request_id: str | None = None  # the step's request-id, if the handle stage derived it
        self.emitted = 0  # events the step emitted (each one reports the step's completion)
        self._key: str | None | bool = False  # False: not decoded yet (ordering asks up to three times)

    @property
    def key(self) -> str | None:
        """The entity id (decoded Kafka key), decoded on first use."""
        if self._key is False:
            raw = self.message.key()
            self._key = raw.decode(errors="replace") if raw is not None else None
        return self._key  # type: ignore[return-value]

    @property
    def is_timer(self) -> bool:
        """A fired timer (see runtime/timers.py): in no partition's log, so it has no offset."""
        return self.message.offset() is None


class Stage:
    """One concern of the per-record path. Override only the hooks you need; only those are called."""

    name = "stage"

    def begin(self, recs: Sequence[Rec]) -> None:
        """Once per batch, before the first record."""

    def enter(self, rec: Rec) -> bool:
        """Forward walk: True passes ``rec`` on to the next stage; False stops its walk."""
        return True

    def leave(self, rec: Rec) -> None:
        """Backward walk, for every record (whether or not its walk reached this stage)."""


def _overridden(stages: Sequence[Stage], hook: str) -> list[Callable[..., Any]]:
    return [getattr(stage, hook) for stage in stages if getattr(type(stage), hook) is not getattr(Stage, hook)]


class Pipeline:
    """Runs a batch's records through the stages, in order; built once per BatchProcessor."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)
        self._begin = _overridden(self.stages, "begin")
        self._enter = _overridden(self.stages, "enter")
        self._leave = _overridden(list(reversed(self.stages)), "leave")

    def describe(self) -> str:
        """``intake → dedupe → …``: the path as the worker logs it at start."""
        return " → ".join(["intake", *(stage.name for stage in self.stages)])

    def run(self, recs: Sequence[Rec]) -> None:
        for begin in self._begin:
            begin(recs)
        enter, leave = self._enter, self._leave
        for rec in recs:
            for step in enter:
                if not step(rec):
                    break
            for step in leave:
                step(rec)
