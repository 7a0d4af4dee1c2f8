"""The flow, from the services' declarations: who consumes which event, which events end a job.

The progress service never talks to the services: everything it knows about the saga's shape comes from
the same declarations the runtime runs — each bound service's ``@handler`` inputs and join parts (the
steps it *will* run for an event of that type), and the event classes' ``ends_job`` (:class:`JobEnd`) and
``job_deadline`` keywords. Timer handlers are not consumers: a fired timer is not a record on a topic, so
no observer can expect its step before the service reports it.

Built once at start; immutable afterwards, so the consumer thread and the HTTP threads share it freely.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from choreo.errors import ConfigError
from choreo.events import Event, EventBinding, JobEnd, bind
from choreo.retry.headers import dlq_topic
from choreo.schemas.catalog import SchemaCatalog
from choreo.service import BoundService, Service


@dataclass(frozen=True)
class Flow:
    """What the declarations say about every job.

    - ``consumers``: ``ce_type`` → the services with a step for it (sorted, no duplicates);
    - ``bindings``: ``ce_type`` → the event class bound to its schema (to decode deadlines and reasons);
    - ``domain_topics``: the catalog topics events live on (never retry or DLQ topics);
    - ``services``: every consuming service (their ``<service>.dlq`` topics give the dead-letter positions).
    """

    consumers: dict[str, tuple[str, ...]]
    bindings: dict[str, EventBinding]
    domain_topics: tuple[str, ...]
    services: tuple[str, ...] = field(default=())

    def ends_job(self, event_type: str) -> JobEnd | None:
        binding = self.bindings.get(event_type)
        return binding.event_class.ends_job if binding is not None else None

    def deadline_field(self, event_type: str) -> str | None:
        binding = self.bindings.get(event_type)
        return binding.event_class.job_deadline_field if binding is not None else None

    def needs_payload(self, event_type: str, is_root: bool) -> bool:
        """True if the record's value must be decoded: a root with a deadline, or an end with a reason field."""
        end = self.ends_job(event_type)
        return (is_root and self.deadline_field(event_type) is not None) or bool(end and end.reason_field)

    @property
    def dlq_topics(self) -> tuple[str, ...]:
        return tuple(dlq_topic(s) for s in self.services)


def build_flow(bound: Sequence[BoundService], catalog: SchemaCatalog) -> Flow:
    """The flow of ``bound`` services over ``catalog``; ConfigError if no service is given."""
    if not bound:
        raise ConfigError("the progress service needs at least one service to follow")
    consumers: dict[str, set[str]] = {}
    bindings: dict[str, EventBinding] = {}
    for service in bound:
        for type_name, (binding, _) in service.inputs.items():
            consumers.setdefault(type_name, set()).add(service.name)
            bindings.setdefault(type_name, binding)
        for _, parts in service.joins:
            for binding in parts.values():
                consumers.setdefault(binding.type_name, set()).add(service.name)
                bindings.setdefault(binding.type_name, binding)
        for type_name, (binding, _) in service.timer_inputs.items():
            bindings.setdefault(type_name, binding)
    # Events nobody consumes can still end a job or carry its deadline: bind every loaded event class
    # the catalog knows, so e.g. a terminal event with no consumer still sets the job's status.
    for event_class in _event_classes():
        name = getattr(event_class, "avro_name", None)
        if name is None:
            continue
        try:
            binding = bind(event_class, catalog)
        except ConfigError:
            continue  # a class of another catalog (tests, other apps loaded in the process)
        bindings.setdefault(binding.type_name, binding)
    services = sorted({s.name for s in bound})
    return Flow(consumers={t: tuple(sorted(s)) for t, s in consumers.items()}, bindings=bindings,
                domain_topics=tuple(sorted(catalog.topics())), services=tuple(services))


def bind_services(services: Iterable[Service], catalog: SchemaCatalog) -> list[BoundService]:
    return [service.bind(catalog) for service in services]


def _event_classes() -> list[type[Event]]:
    seen: list[type[Event]] = []
    stack = list(Event.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen.append(cls)
            stack.extend(cls.__subclasses__())
    return seen
