"""Routes: which handler a record goes to, built once per worker from the service's declarations.

- a consumed event goes to its ``@handler``, or to its join's part handler (``@join``);
- a fired timer (``choreo-timer`` header) goes to its join's time limit (``join:<name>``), else to the
  service's ``@on_timer`` handler for the event's type, else to a route that emits the event as it is.
Each route carries the handler wrapped in the service's middleware and a per-batch duration tally.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from choreo.errors import ConfigError
from choreo.events import Event, EventBinding, bind, event_classes
from choreo.join import JoinSpec
from choreo.observability import metrics
from choreo.observability.histogram import Tally
from choreo.runtime.intake import TIMER_HEADER
from choreo.runtime.invoke import build_chain, wrap
from choreo.runtime.joins import JoinPart, JoinTimeout, timeout_timer_name
from choreo.serde.avro import AvroEventSerde
from choreo.service import BoundService, Handler, HandlerSpec


class Route:
    """Everything the hot path needs about one input event type, looked up once per record."""

    __slots__ = ("binding", "type_name", "transactional", "chain", "tally", "emits", "handler")

    def __init__(self, binding: EventBinding, transactional: bool, chain: Handler, tally: Tally,
                 emits: frozenset[type[Event]], handler: str) -> None:
        self.binding = binding
        self.type_name = binding.type_name
        self.transactional = transactional
        self.chain = chain  # the handler wrapped in the service's middleware
        self.tally = tally  # handler durations, merged into Prometheus once per batch
        self.emits = emits  # the event types the handler declares: any other output is refused
        self.handler = handler  # its name, for the refusal's message


def _emit_as_is(event: Event, ctx: object) -> list[Event]:
    return [event]


class Routes:
    """Route look-up for intake: ``routes.of(ce_type, headers)``; unknown types give None."""

    def __init__(self, bound: BoundService, loop: asyncio.AbstractEventLoop, serde: AvroEventSerde) -> None:
        self.bound, self.loop, self.serde = bound, loop, serde
        middleware = bound.service.middleware
        self.consumed: dict[str, Route] = {
            type_name: self._route(binding, spec.transactional, build_chain(spec, loop, middleware),
                                   spec.declared_emits, spec.name)
            for type_name, (binding, spec) in bound.inputs.items()
        }
        self.timed: dict[str, Route] = {  # @on_timer handlers, by the scheduled event's type
            type_name: self._route(binding, spec.transactional, build_chain(spec, loop, middleware),
                                   spec.declared_emits, spec.name)
            for type_name, (binding, spec) in bound.timer_inputs.items()
        }
        self.join_timeouts: dict[tuple[str, str], Route] = {}
        for spec, bindings in bound.joins:
            self._add_join(spec, bindings)

    def of(self, event_type: str, headers: dict[str, bytes]) -> Route | None:
        timer = headers.get(TIMER_HEADER)
        if timer is None:
            return self.consumed.get(event_type)
        name = timer.decode(errors="replace")
        route = self.join_timeouts.get((name, event_type)) or self.timed.get(event_type)
        return route if route is not None else self._emitter(event_type)

    def __iter__(self) -> Iterator[Route]:
        yield from self.consumed.values()
        yield from self.timed.values()
        yield from self.join_timeouts.values()

    def _route(self, binding: EventBinding, transactional: bool, chain: Handler,
               emits: frozenset[type[Event]], handler: str) -> Route:
        return Route(binding, transactional, chain, metrics.HANDLER_DURATION.tally(), emits, handler)

    def _add_join(self, spec: JoinSpec, bindings: dict[type[Event], EventBinding]) -> None:
        classes = {binding.type_name: cls for cls, binding in bindings.items()}
        middleware = self.bound.service.middleware
        complete = build_chain(HandlerSpec(spec.parts[0], spec.func, True), self.loop, ())
        timeout = build_chain(HandlerSpec(spec.parts[0], spec.on_timeout, True), self.loop, ()) \
            if spec.on_timeout is not None else None
        emits = spec.declared_emits
        for binding in bindings.values():
            part = JoinPart(self.bound.name, spec, binding, classes, self.serde, complete)
            self.consumed[binding.type_name] = self._route(binding, True, wrap(part, middleware), emits, spec.name)
            limit = JoinTimeout(self.bound.name, spec, classes, timeout)
            self.join_timeouts[(timeout_timer_name(spec), binding.type_name)] = self._route(
                binding, True, wrap(limit, middleware), emits, spec.name)

    def _emitter(self, event_type: str) -> Route | None:
        """A route emitting a due timer's event as it is (no @on_timer handler); built on first use."""
        event_class = _event_class(event_type, self.bound)
        if event_class is None:
            return None
        binding = self.bound.output_binding(event_class)
        route = self.timed[event_type] = self._route(binding, False, _emit_as_is, frozenset({event_class}),
                                                     "due timer")
        return route


def _event_class(type_name: str, bound: BoundService) -> type[Event] | None:
    """The Event subclass whose schema is ``type_name`` (a timer's event may be any catalog event)."""
    for cls in event_classes():
        if getattr(cls, "avro_name", None) in (type_name, type_name.rsplit(".", 1)[-1]):
            try:
                if bind(cls, bound.catalog).type_name == type_name:
                    return cls
            except ConfigError:
                continue  # a class of another catalog: not this one
    return None
