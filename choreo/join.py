"""Joins: one handler that needs several event types of one key, within a time limit.

    @shipping.join(StockReserved, FraudCheckPassed, within=timedelta(seconds=60), on_timeout=give_up)
    def ship(parts: Joined, ctx: Context) -> ShipmentDispatched:
        reserved, fraud = parts                 # declared order
        ...

    def give_up(parts: Joined, ctx: Context) -> ShipmentFailed | None:
        ...                                     # parts.missing names what never came

Contract (see :mod:`choreo.runtime.stages.join` for how):
- The parts may arrive in any order, on different topics and partitions (co-partitioned by key), and
  more than once: the first copy of each part type counts, later ones are dropped as duplicates.
- The handler runs once, when the last missing part arrives, in a store transaction (``ctx.tx``) that
  also records the part and closes the join; its context is the completing part's.
- ``within`` counts from the first part's arrival, on the wall clock: when it passes with a part
  missing, ``on_timeout`` runs (once, in a transaction) even if no further record ever arrives.
- A part arriving after the join completed or timed out is ignored and counted
  (``choreo_join_late_parts_total``).
- Pending parts, the time limit and the closed-join markers live in the service's store, so restarts
  and rebalances lose none and fire nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from choreo.events import Event


class Joined:
    """The parts of one join for one key, in declared order; a missing part is None (timeouts only)."""

    __slots__ = ("_types", "_parts")

    def __init__(self, types: tuple[type[Event], ...], parts: dict[type[Event], Event]) -> None:
        self._types = types
        self._parts = parts

    def __getitem__(self, event_class: type[Event]) -> Event | None:
        if event_class not in self._types:
            raise KeyError(f"{event_class.__name__} is not a part of this join")
        return self._parts.get(event_class)

    def __iter__(self) -> Iterator[Any]:
        return (self._parts.get(t) for t in self._types)

    def __len__(self) -> int:
        return len(self._types)

    @property
    def complete(self) -> bool:
        return all(t in self._parts for t in self._types)

    @property
    def missing(self) -> list[type[Event]]:
        """The part types that have not arrived."""
        return [t for t in self._types if t not in self._parts]

    def __repr__(self) -> str:
        have = ", ".join(t.__name__ + ("" if t in self._parts else "?") for t in self._types)
        return f"Joined({have})"


JoinFunc = Callable[[Joined, Any], Any]


@dataclass(frozen=True)
class JoinSpec:
    """One declared join: its parts, time limit (seconds) and the two functions it may call."""

    parts: tuple[type[Event], ...]
    within_s: float
    func: JoinFunc
    on_timeout: JoinFunc | None = None

    @property
    def name(self) -> str:
        """Stable name of the join (its handler's qualified name): the key of its stored rows."""
        return getattr(self.func, "__qualname__", repr(self.func))

    @property
    def declared_emits(self) -> frozenset[type[Event]]:
        """What the join handler and its timeout declare they emit (return annotations, choreo.emits)."""
        from choreo.emits import emitted_types  # choreo.emits imports events and errors only: no cycle

        timeout = emitted_types(self.on_timeout) if self.on_timeout is not None else set()
        return frozenset(emitted_types(self.func) | timeout)
