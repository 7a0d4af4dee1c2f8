"""What `choreo dev` runs, on which ports, with which environment — decided before anything starts.

The process list is data (:data:`REFERENCE_PROCESSES`): the reference services in flow order, then
the progress observer. An entry takes part only when it exists in this checkout — a service when
``services.<name>`` can be imported, a command when it is registered in the `choreo` app — so dev works
while the shop is being written and picks up each part as it lands, instead of crash-looping on a
missing module.

Ports: the broker, registry, order API and progress service have fixed defaults (SPEC §4); a process
with an API serves ``/metrics`` there too (one server, see `choreo run`). Each other process's
``/metrics`` port is ``metrics_base + its index in REFERENCE_PROCESSES``, so a service keeps
its port across restarts and dev runs (a Prometheus scrape config can name it); a taken one falls back to
a free port, and ``metrics_base=0`` takes free ports throughout (tests).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Literal

from choreo.errors import ConfigError
from choreo.kafka.embedded import free_port, port_is_free


@dataclass(frozen=True)
class ReferenceProcess:
    """One part of the shop: a service (`choreo run NAME`) or a server command (`choreo NAME`)."""

    name: str
    kind: Literal["service", "command"] = "service"
    # Which fixed SPEC port this process serves its own API on, if any.
    api: Literal["order", "progress"] | None = None


REFERENCE_PROCESSES: tuple[ReferenceProcess, ...] = (
    ReferenceProcess("order", api="order"),
    ReferenceProcess("payment"),
    ReferenceProcess("fraud"),
    ReferenceProcess("inventory"),
    ReferenceProcess("shipping"),
    ReferenceProcess("notification"),
    ReferenceProcess("progress", kind="command", api="progress"),
)


def registered_commands() -> set[str]:
    """Top-level commands of the `choreo` app (what `choreo NAME --help` would accept)."""
    from choreo.cli.main import app  # here, not at import: main imports this module's users

    names = {info.name or (info.callback.__name__ if info.callback else "") for info in app.registered_commands}
    return names | {info.name for info in app.registered_groups if info.name}


def is_available(process: ReferenceProcess, commands: set[str] | None = None) -> bool:
    """A service whose module exists, or a command the CLI has."""
    if process.kind == "command":
        return process.name in (registered_commands() if commands is None else commands)
    try:
        return importlib.util.find_spec(f"services.{process.name}") is not None
    except ModuleNotFoundError:  # no `services` package at all
        return False


def assign_metrics_ports(names: list[str], host: str, base: int) -> dict[str, int]:
    """``/metrics`` port per name: ``base + index in REFERENCE_PROCESSES`` if free, else a free one."""
    order = [p.name for p in REFERENCE_PROCESSES]
    ports: dict[str, int] = {}
    for name in names:
        wanted = base + order.index(name) if base else 0
        ports[name] = wanted if wanted and port_is_free(host, wanted) else free_port(host)
    return ports


@dataclass
class DevPlan:
    """Addresses of every part and the processes to run. ``bootstrap``/``registry_url`` set = external."""

    host: str
    broker_port: int
    registry_port: int
    order_api_port: int
    progress_port: int
    processes: list[ReferenceProcess]
    metrics_ports: dict[str, int] = field(default_factory=dict)
    external_bootstrap: str | None = None
    external_registry: str | None = None

    @property
    def bootstrap_servers(self) -> str:
        return self.external_bootstrap or f"{self.host}:{self.broker_port}"

    @property
    def registry_url(self) -> str:
        return self.external_registry or f"http://{self.host}:{self.registry_port}"

    @property
    def order_api_url(self) -> str:
        return f"http://{self.host}:{self.order_api_port}"

    @property
    def progress_url(self) -> str:
        return f"http://{self.host}:{self.progress_port}"

    @property
    def service_names(self) -> list[str]:
        return [p.name for p in self.processes if p.kind == "service"]

    def metrics_urls(self) -> dict[str, str]:
        """Where each process serves /metrics: its API port if it has one (one server), else its own."""
        urls = {}
        for process in self.processes:
            port = self.api_port(process) or self.metrics_ports.get(process.name)
            if port:
                urls[process.name] = f"http://{self.host}:{port}/metrics"
        return urls

    def api_port(self, process: ReferenceProcess) -> int | None:
        return {"order": self.order_api_port, "progress": self.progress_port}.get(process.api or "")

    def argv(self, process: ReferenceProcess) -> list[str]:
        """`choreo` arguments of a process (without the interpreter)."""
        if process.kind == "command":
            return [process.name, "--host", self.host, "--port", str(self.api_port(process))]
        return ["run", process.name]

    def health_bases(self, process: ReferenceProcess) -> list[str]:
        """Base URLs where the process answers /healthz and /readyz (its metrics port, its API port)."""
        ports = [p for p in (self.metrics_ports.get(process.name), self.api_port(process)) if p]
        return [f"http://{self.host}:{port}" for port in ports]

    def fixed_ports(self) -> list[tuple[str, int]]:
        """The ports dev must bind itself (or its children must), for the taken-port check."""
        wanted: list[tuple[str, int]] = []
        if not self.external_bootstrap:
            wanted.append(("broker", self.broker_port))
        if not self.external_registry:
            wanted.append(("registry", self.registry_port))
        names = {p.name for p in self.processes}
        if "order" in names:
            wanted.append(("order API", self.order_api_port))
        if "progress" in names:
            wanted.append(("progress service", self.progress_port))
        return wanted

    def check_ports(self) -> None:
        """One clear error if two parts want one port or a port is already taken."""
        seen: dict[int, str] = {}
        for what, port in self.fixed_ports():
            if port in seen:
                raise ConfigError(f"the {seen[port]} and the {what} cannot both use port {port}")
            seen[port] = what
            if not port_is_free(self.host, port):
                raise ConfigError(f"cannot start the {what}: port {self.host}:{port} is already in use")
