"""What a handler declares it emits: the Event classes its return annotation names, or ``emits=``.

``-> PaymentAuthorized | PaymentDeclined | None``, ``-> Iterator[X]``, ``-> list[X]``, ``async def … -> X``
all declare; the runtime refuses (dead-letters, as a permanent error) an emitted type that was not
declared, so the choreography map drawn from the declarations (``choreo graph``) cannot lie.
"""

from __future__ import annotations

import collections.abc as cabc
import types
import typing

from choreo.errors import PermanentError
from choreo.events import Event

_CONTAINERS = {list, tuple, set, frozenset, cabc.Iterable, cabc.Iterator, cabc.Generator, cabc.Sequence,
               cabc.AsyncIterator, cabc.AsyncIterable, cabc.AsyncGenerator, cabc.Awaitable, cabc.Coroutine}


def emitted_types(func: object) -> set[type[Event]]:
    """The Event classes ``func``'s return annotation names (unions, Optional, iterators, lists)."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # noqa: BLE001 - an unresolvable annotation names nothing we can draw
        return set()
    return _events_in(hints.get("return"))


def _events_in(annotation: object) -> set[type[Event]]:
    if isinstance(annotation, type) and issubclass(annotation, Event):
        return {annotation}
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) or origin in _CONTAINERS:
        args = typing.get_args(annotation)
        if origin in (cabc.Generator, cabc.AsyncGenerator, cabc.Coroutine):
            args = args[:1] if origin is not cabc.Coroutine else args[-1:]  # what is yielded / returned
        return set().union(*(_events_in(arg) for arg in args)) if args else set()
    return set()


class UndeclaredEmission(PermanentError):
    """A handler emitted an event type it does not declare (return annotation or ``emits=``)."""

    def __init__(self, handler: str, emitted: type, declared: typing.Iterable[type]) -> None:
        names = ", ".join(sorted(t.__name__ for t in declared)) or "nothing"
        super().__init__(f"handler {handler} emitted {emitted.__name__} but declares {names}: add it to its "
                         "return annotation or to emits=(...)")
        self.handler, self.emitted = handler, emitted
