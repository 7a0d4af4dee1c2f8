"""Call a user handler, whatever its shape, and compose the middleware around it.

Every handler is normalized to ``(event, ctx) -> list[Event]``: a returned event, an iterable of events,
``None``, a generator, a coroutine or an async generator. Coroutines run on the worker's own event loop,
so ``async def`` handlers cost no thread hop. The chain is built once per handler, outermost first.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from choreo.context import Context
from choreo.errors import ConfigError
from choreo.events import Event
from choreo.service import Handler, HandlerSpec, Middleware


def _as_list(result: Any, spec: HandlerSpec) -> list[Event]:
    if result is None:
        return []
    if isinstance(result, Event):
        return [result]
    if isinstance(result, Iterable) and not isinstance(result, str | bytes | dict):
        events = list(result)
        for item in events:
            if not isinstance(item, Event):
                raise ConfigError(f"handler {spec.name} emitted {item!r}, which is not an Event")
        return events
    raise ConfigError(f"handler {spec.name} returned {result!r}; return an Event, a list of Events or None")


async def _drain(generator: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in generator]


def adapt(spec: HandlerSpec, loop: asyncio.AbstractEventLoop) -> Handler:
    """The innermost handler: calls the user's function and returns the events it emitted."""
    kind = spec.kind
    func = spec.func

    if kind == "async-gen":
        def call_async_gen(event: Event, ctx: Context) -> list[Event]:
            return _as_list(loop.run_until_complete(_drain(func(event, ctx))), spec)  # type: ignore[arg-type]
        return call_async_gen
    if kind == "async":
        def call_async(event: Event, ctx: Context) -> list[Event]:
            return _as_list(loop.run_until_complete(func(event, ctx)), spec)  # type: ignore[arg-type]
        return call_async

    def call_sync(event: Event, ctx: Context) -> list[Event]:
        result = func(event, ctx)
        if isinstance(result, Event):  # the common case first: one event back, nothing to inspect
            return [result]
        # A plain decorator around an async handler hides it: await what it hands back.
        if inspect.isawaitable(result):
            result = loop.run_until_complete(result)  # type: ignore[arg-type]
        elif inspect.isasyncgen(result):
            result = loop.run_until_complete(_drain(result))
        return _as_list(result, spec)
    return call_sync


def build_chain(spec: HandlerSpec, loop: asyncio.AbstractEventLoop, middleware: Sequence[Middleware]) -> Handler:
    """The adapted handler wrapped in ``middleware`` (see :func:`wrap`)."""
    return wrap(adapt(spec, loop), middleware)


def wrap(handler: Handler, middleware: Sequence[Middleware]) -> Handler:
    """Wrap ``handler`` so ``middleware[0]`` is outermost (runs first, sees the result last)."""
    for layer in reversed(middleware):
        handler = layer(handler)
    return handler
