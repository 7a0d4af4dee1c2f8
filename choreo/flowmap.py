"""The choreography map, drawn from the services' declarations: who emits and who consumes which event.

What a service *consumes* is what it declares (``@handler``, ``@join`` parts). What it *emits* comes from
its handlers' return annotations (``-> PaymentAuthorized | PaymentDeclined | None``, ``Iterator[X]``,
``list[X]``), its timer handlers', its joins' and their timeouts', plus ``Service(publishes=...)`` for
events it publishes from outside a handler (an HTTP API starting jobs). The map is checked:

- consumed but never produced (nobody emits or publishes it: the consumer waits for ever);
- produced but never consumed (a dead end, or a consumer missing from the map);
- events without a schema in the catalog;
- cycles: an event chain leading back to a service it passed, reported with its path, unless one of
  the services on it declares ``Service(intended_cycles=True)`` (e.g. the service that closes its jobs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from choreo.errors import ConfigError
from choreo.events import Event
from choreo.schemas.catalog import SchemaCatalog
from choreo.service import Service


@dataclass(frozen=True)
class Edge:
    producer: str
    event: str  # the event class's name
    consumer: str


Step = tuple[str, "type[Event] | None"]  # (service, the event it handles; None: published from outside)


@dataclass
class FlowMap:
    """Services, what each step (a service handling one event type) emits, and the edges between them."""

    steps: dict[str, dict[type[Event] | None, set[type[Event]]]] = field(default_factory=dict)
    timers: dict[str, dict[type[Event], set[type[Event]]]] = field(default_factory=dict)
    intended: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, services: Sequence[Service]) -> FlowMap:
        if not services:
            raise ConfigError("the map needs at least one service")
        flow = cls()
        for service in services:
            steps: dict[type[Event] | None, set[type[Event]]] = {}
            if service.publishes:
                steps[None] = set(service.publishes)
            for event_class, spec in service.handlers.items():
                steps[event_class] = set(spec.declared_emits)
            for join in service.joins:  # the join's outputs may follow any part's arrival
                for part in join.parts:
                    steps[part] = set(join.declared_emits)
            flow.steps[service.name] = steps
            flow.timers[service.name] = {event_class: set(spec.declared_emits)
                                         for event_class, spec in service.timer_handlers.items()}
            if service.intended_cycles:
                flow.intended.add(service.name)
        return flow

    @property
    def consumes(self) -> dict[str, set[type[Event]]]:
        return {s: {i for i in steps if i is not None} for s, steps in self.steps.items()}

    @property
    def emits(self) -> dict[str, set[type[Event]]]:
        return {s: set().union(*steps.values(), *self.timers[s].values()) for s, steps in self.steps.items()}

    def edges(self) -> list[Edge]:
        consumes = self.consumes
        return sorted({Edge(p, e.__name__, c) for p, events in self.emits.items() for e in events
                       for c, consumed in consumes.items() if e in consumed},
                      key=lambda edge: (edge.producer, edge.event, edge.consumer))

    def consumed_never_produced(self) -> list[tuple[str, str]]:
        produced = set().union(*self.emits.values())
        return sorted((e.__name__, s) for s, events in self.consumes.items() for e in events if e not in produced)

    def produced_never_consumed(self) -> list[tuple[str, str]]:
        consumed = set().union(*self.consumes.values())
        return sorted((e.__name__, s) for s, events in self.emits.items() for e in events if e not in consumed)

    def without_schema(self, catalog: SchemaCatalog) -> list[str]:
        names = {schema.full_name for schema in catalog} | {schema.name for schema in catalog}
        every = set().union(*self.emits.values(), *self.consumes.values())
        return sorted(e.__name__ for e in every if getattr(e, "avro_name", None) not in names)

    def cycles(self) -> list[list[Edge]]:
        """Every event chain (step → emitted event → the steps consuming it → …) that comes back to a
        service already on it, as the path of edges from that service; each once."""
        consumers: dict[type[Event], list[str]] = {}
        for service, steps in self.steps.items():
            for event_class in steps:
                if event_class is not None:
                    consumers.setdefault(event_class, []).append(service)
        found: dict[tuple[Edge, ...], list[Edge]] = {}

        def walk(step: Step, path: list[Edge]) -> None:
            service, handled = step
            for output in sorted(self.steps[service].get(handled, ()), key=lambda e: e.__name__):
                for consumer in sorted(consumers.get(output, ())):
                    edge = Edge(service, output.__name__, consumer)
                    visited = [e.producer for e in path] + [service]
                    if consumer in visited:
                        cycle = (path + [edge])[visited.index(consumer):]
                        found.setdefault(_canonical(cycle), cycle)
                    elif len(path) < 32:
                        walk((consumer, output), path + [edge])

        for service, steps in sorted(self.steps.items()):
            for handled in steps:
                walk((service, handled), [])
        return sorted(found.values(), key=describe_cycle)

    def unintended_cycles(self) -> list[list[Edge]]:
        return [c for c in self.cycles() if not any(e.producer in self.intended for e in c)]


def _canonical(path: list[Edge]) -> tuple[Edge, ...]:
    i = min(range(len(path)), key=lambda k: (path[k].producer, path[k].event))
    return tuple(path[i:] + path[:i])


def describe_cycle(cycle: Iterable[Edge]) -> str:
    """``order -OrderPlaced-> payment -PaymentDeclined-> order``."""
    edges = list(cycle)
    return edges[0].producer + "".join(f" -{e.event}-> {e.consumer}" for e in edges)


def mermaid(flow: FlowMap) -> str:
    lines = ["flowchart LR"]
    lines += [f"  {_id(s)}([{s}])" for s in sorted(flow.steps)]
    lines += [f"  {_id(e.producer)} -- {e.event} --> {_id(e.consumer)}" for e in flow.edges()]
    lines += [f"  {_id(s)} -. timer {t.__name__} .-> {_id(s)}" for s, timers in sorted(flow.timers.items())
              for t in sorted(timers, key=lambda c: c.__name__)]
    return "\n".join(lines) + "\n"


def dot(flow: FlowMap) -> str:
    lines = ["digraph choreography {", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    lines += [f'  "{s}";' for s in sorted(flow.steps)]
    lines += [f'  "{e.producer}" -> "{e.consumer}" [label="{e.event}"];' for e in flow.edges()]
    lines += [f'  "{s}" -> "{s}" [label="timer {t.__name__}", style=dashed];'
              for s, timers in sorted(flow.timers.items()) for t in sorted(timers, key=lambda c: c.__name__)]
    return "\n".join(lines + ["}"]) + "\n"


def _id(name: str) -> str:
    return name.replace("-", "_")
