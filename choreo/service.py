"""Declaring a service: a name (its consumer group) and one handler per event type it reacts to.

    orders = Service("shipping")

    @orders.handler(StockReserved)
    def ship(event: StockReserved, ctx: Context) -> ShipmentDispatched:
        return ShipmentDispatched(order_id=event.order_id, ...)

A handler may be ``def`` or ``async def`` and returns (or yields) the events it emits; the runtime
publishes them, stamps correlation and deterministic ids, and only then marks the input done.
Decorators only register: a bad declaration fails here, naming the problem; schema binding is checked
when the service starts (:meth:`Service.bind`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeAlias

from choreo.context import Context
from choreo.errors import ConfigError
from choreo.events import Event, EventBinding, bind
from choreo.join import JoinFunc, JoinSpec
from choreo.retry.policy import RetryPolicy
from choreo.schemas.catalog import SchemaCatalog

HandlerResult: TypeAlias = Event | Iterable[Event] | None
HandlerFunc: TypeAlias = Callable[
    [Any, Context], HandlerResult | Awaitable[HandlerResult] | AsyncIterator[Event]
]
# The normalized, synchronous form middleware wraps: event + context → list of emitted events.
Handler: TypeAlias = Callable[[Event, Context], list[Event]]
Middleware: TypeAlias = Callable[[Handler], Handler]

_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class HandlerSpec:
    """One registered handler. ``transactional`` opens a store transaction around the call."""

    event_class: type[Event]
    func: HandlerFunc
    transactional: bool = False
    retry: RetryPolicy | None = None
    emits: tuple[type[Event], ...] | None = None  # None: what the return annotation names

    @property
    def declared_emits(self) -> frozenset[type[Event]]:
        """The event types this handler may emit; the runtime refuses any other (choreo.emits)."""
        from choreo.emits import emitted_types  # choreo.emits imports the errors only: no cycle

        return frozenset(self.emits) if self.emits is not None else frozenset(emitted_types(self.func))

    @property
    def name(self) -> str:
        return getattr(self.func, "__qualname__", repr(self.func))

    @property
    def kind(self) -> str:
        """'async-gen', 'async', 'gen' or 'sync': how the runtime must call it."""
        if inspect.isasyncgenfunction(self.func):
            return "async-gen"
        if inspect.iscoroutinefunction(self.func):
            return "async"
        if inspect.isgeneratorfunction(self.func):
            return "gen"
        return "sync"


@dataclass
class Service:
    """A named set of handlers; the name is the consumer group and prefixes its retry/DLQ topics."""

    name: str
    middleware: Sequence[Middleware] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Later events of a key wait behind one in retry instead of overtaking it (see runtime/ordering.py).
    ordered_retries: bool = False
    # DDL of the service's own state tables (portable SQL, ``CREATE TABLE IF NOT EXISTS``), run at start.
    state_ddl: Sequence[str] = ()
    # An HTTP API served by `choreo run` beside /metrics (see choreo.api.ServiceApi), or None.
    api: Any = None
    # Events it publishes from outside handlers (its API starting jobs): drawn by `choreo graph`.
    publishes: Sequence[type[Event]] = ()
    # Event chains that lead back to this service are by design (e.g. it closes the jobs it starts).
    intended_cycles: bool = False
    handlers: dict[type[Event], HandlerSpec] = field(default_factory=dict)
    # Handlers of fired timers, by the scheduled event's class (see Context.schedule).
    timer_handlers: dict[type[Event], HandlerSpec] = field(default_factory=dict)
    joins: list[JoinSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _SERVICE_NAME.match(self.name):
            raise ConfigError(
                f"service name {self.name!r} must be lower-case letters, digits, '-' or '_' (max 64)"
            )

    def handler(self, event_class: type[Event], *, transactional: bool = False,
                retry: RetryPolicy | None = None,
                emits: Sequence[type[Event]] | None = None) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register the decorated function as this service's handler for ``event_class``.

        ``retry`` overrides the service's retry policy for this handler only. What the handler may emit
        is what its return annotation names (``-> A | B | None``), or ``emits`` where an annotation
        cannot say; the runtime refuses anything else, so the map (``choreo graph``) cannot lie.
        """
        if not (isinstance(event_class, type) and issubclass(event_class, Event)):
            raise ConfigError(f"{self.name}: @handler needs an Event subclass, got {event_class!r}")
        if not hasattr(event_class, "avro_name"):
            raise ConfigError(f"{self.name}: {event_class.__name__} declares no schema")

        def register(func: HandlerFunc) -> HandlerFunc:
            self._check_unclaimed(event_class, getattr(func, "__qualname__", repr(func)))
            self.handlers[event_class] = HandlerSpec(event_class, func, transactional, retry,
                                                     tuple(emits) if emits is not None else None)
            return func

        return register

    def on_timer(self, event_class: type[Event], *, transactional: bool = True
                 ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register the handler of a due timer that carries ``event_class`` (``ctx.schedule(event, at=...)``).

        It gets the scheduled event at its due time, on the partition of its key, and returns what to emit
        (e.g. nothing if the job finished meanwhile). Without one, a due timer's event is emitted as it is.
        Transactional by default: a timer handler usually decides against the service's state.
        """
        self._check_event_class(event_class, "@on_timer")

        def register(func: HandlerFunc) -> HandlerFunc:
            if event_class in self.timer_handlers:
                raise ConfigError(f"{self.name}: two timer handlers for {event_class.__name__}")
            self.timer_handlers[event_class] = HandlerSpec(event_class, func, transactional)
            return func

        return register

    def join(self, *parts: type[Event], within: timedelta | float,
             on_timeout: JoinFunc | None = None) -> Callable[[JoinFunc], JoinFunc]:
        """Register a handler that runs once every part type has arrived for one key (see choreo.join).

        ``within`` (a timedelta or seconds) counts from the first part; ``on_timeout(parts, ctx)`` runs
        when it passes with a part missing. A part type is an input of one join or one handler, not both.
        """
        if len(parts) < 2:
            raise ConfigError(f"{self.name}: a join needs at least two event types, got {len(parts)}")
        if len(set(parts)) != len(parts):
            raise ConfigError(f"{self.name}: a join lists an event type twice")
        for event_class in parts:
            self._check_event_class(event_class, "@join")
        within_s = within.total_seconds() if isinstance(within, timedelta) else float(within)
        if within_s <= 0:
            raise ConfigError(f"{self.name}: a join's time limit must be positive, got {within_s} s")

        def register(func: JoinFunc) -> JoinFunc:
            for event_class in parts:
                self._check_unclaimed(event_class, getattr(func, "__qualname__", repr(func)))
            self.joins.append(JoinSpec(tuple(parts), within_s, func, on_timeout))
            return func

        return register

    def _check_event_class(self, event_class: Any, where: str) -> None:
        if not (isinstance(event_class, type) and issubclass(event_class, Event)):
            raise ConfigError(f"{self.name}: {where} needs an Event subclass, got {event_class!r}")
        if not hasattr(event_class, "avro_name"):
            raise ConfigError(f"{self.name}: {event_class.__name__} declares no schema")

    def _check_unclaimed(self, event_class: type[Event], new: str) -> None:
        """One event type is the input of one handler or one join of a service."""
        existing = self.handlers[event_class].name if event_class in self.handlers else next(
            (j.name for j in self.joins if event_class in j.parts), None)
        if existing is not None:
            raise ConfigError(
                f"{self.name}: two handlers for {event_class.__name__} ({existing} and {new}); "
                "one event type has one handler (or join) per service"
            )

    def bind(self, catalog: SchemaCatalog) -> BoundService:
        """Resolve every handled event against the schema catalog; ConfigError on any mismatch."""
        if not self.handlers and not self.joins:
            raise ConfigError(f"service {self.name!r} declares no handlers")
        inputs: dict[str, tuple[EventBinding, HandlerSpec]] = {}
        for event_class, spec in self.handlers.items():
            binding = bind(event_class, catalog)
            inputs[binding.type_name] = (binding, spec)
        timer_inputs = {}
        for event_class, spec in self.timer_handlers.items():
            binding = bind(event_class, catalog)
            timer_inputs[binding.type_name] = (binding, spec)
        joins = [(spec, {cls: bind(cls, catalog) for cls in spec.parts}) for spec in self.joins]
        return BoundService(self, catalog, inputs, timer_inputs, joins)


class BoundService:
    """A service joined to its schemas: what topics it reads and how to bind what it emits."""

    def __init__(self, service: Service, catalog: SchemaCatalog,
                 inputs: dict[str, tuple[EventBinding, HandlerSpec]],
                 timer_inputs: dict[str, tuple[EventBinding, HandlerSpec]] | None = None,
                 joins: list[tuple[JoinSpec, dict[type[Event], EventBinding]]] | None = None) -> None:
        self.service = service
        self.catalog = catalog
        self.inputs = inputs  # consumed event type → its @handler
        self.timer_inputs = timer_inputs or {}  # scheduled event type → its @on_timer handler
        self.joins = joins or []  # each join with the bindings of its parts
        self._outputs: dict[type[Event], EventBinding] = {}

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def topics(self) -> list[str]:
        """The domain topics this service reads (its retry topics come from its failure policy)."""
        topics = {binding.topic for binding, _ in self.inputs.values()}
        topics.update(binding.topic for _, bindings in self.joins for binding in bindings.values())
        return sorted(topics)

    def retry_policies(self) -> dict[str, RetryPolicy]:
        """Per-event-type retry overrides (``ce_type`` → policy)."""
        return {name: spec.retry for name, (_, spec) in self.inputs.items() if spec.retry is not None}

    def output_binding(self, event_class: type[Event]) -> EventBinding:
        """Binding of an emitted event's class, checked once and cached."""
        binding = self._outputs.get(event_class)
        if binding is None:
            binding = self._outputs[event_class] = bind(event_class, self.catalog)
        return binding
