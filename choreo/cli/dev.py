"""`choreo dev`: the whole stack on one machine — embedded broker, schema registry, registered schemas.

Start order: broker, then each child process in ``DevStack.children`` (today the registry; the reference
services join that list later), then schema registration. Stop order is the reverse, on Ctrl-C or SIGTERM.
Children log to ``$CHOREO_STATE_DIR/dev/<name>.log``.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console

from choreo.cli.errors import fail, friendly_errors
from choreo.cli.schemas import print_outcomes, quiet_http_logs
from choreo.config import Settings
from choreo.errors import ConfigError, InfrastructureError
from choreo.kafka.embedded import EmbeddedBroker, port_is_free
from choreo.schemas.catalog import SchemaCatalog
from choreo.schemas.registration import register_all, registry_client
from choreo.testing.processes import ChoreoProcess

console = Console(highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class ChildSpec:
    """A `choreo` sub-command run as a child process, ready once ``ready_url`` answers."""

    name: str
    args: list[str]
    ready_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class DevStack:
    """The embedded broker plus child processes, started in order and stopped in reverse."""

    host: str
    broker_port: int
    registry_port: int
    log_dir: Path
    broker: EmbeddedBroker | None = None
    running: list[tuple[ChildSpec, ChoreoProcess]] = field(default_factory=list)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.broker_port}"

    @property
    def registry_url(self) -> str:
        return f"http://{self.host}:{self.registry_port}"

    def children(self) -> list[ChildSpec]:
        """What runs beside the broker. The reference services will be appended here."""
        return [
            ChildSpec(
                name="registry",
                args=["registry", "--host", self.host, "--port", str(self.registry_port)],
                ready_url=f"{self.registry_url}/subjects",
            ),
        ]

    def check_ports(self) -> None:
        """Fail before starting anything if a port we need is taken."""
        for what, port in (("broker", self.broker_port), ("registry", self.registry_port)):
            if not port_is_free(self.host, port):
                raise ConfigError(f"cannot start the {what}: port {self.host}:{port} is already in use")

    def start(self, timeout_s: float = 60.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.broker = EmbeddedBroker(self.host, self.broker_port, log_path=self.log_dir / "broker.log")
        self.broker.start(timeout_s=timeout_s)
        for spec in self.children():
            process = ChoreoProcess(
                spec.args,
                env={"CHOREO_BOOTSTRAP_SERVERS": self.bootstrap_servers, **spec.env},
                log_path=self.log_dir / f"{spec.name}.log",
            ).start()
            self.running.append((spec, process))
            if spec.ready_url:
                try:
                    process.wait_http(spec.ready_url, timeout_s=timeout_s)
                except TimeoutError as exc:
                    raise InfrastructureError(
                        f"{spec.name} did not answer on {spec.ready_url}: {exc} (log: {process.log_path})"
                    ) from exc

    def dead_child(self) -> tuple[ChildSpec, ChoreoProcess] | None:
        """The first child (or None) that exited on its own."""
        for spec, process in self.running:
            if not process.alive():
                return spec, process
        return None

    def stop(self) -> None:
        """Children in reverse start order, then the broker. Safe to call twice."""
        while self.running:
            spec, process = self.running.pop()
            if process.alive():
                console.print(f"stopping {spec.name}")
            process.terminate()
        if self.broker is not None:
            if self.broker.is_running():
                console.print("stopping broker")
            self.broker.stop()
            self.broker = None


def _stop_event() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


@friendly_errors
def dev(
    host: str = typer.Option("127.0.0.1", help="Interface every part listens on."),
    broker_port: int = typer.Option(9092, min=1, max=65535, help="Kafka port of the embedded broker."),
    registry_port: int = typer.Option(8081, min=1, max=65535, help="HTTP port of the schema registry."),
) -> None:
    """Run the embedded broker and schema registry, register the schemas, and wait for Ctrl-C."""
    quiet_http_logs()
    settings = Settings()
    catalog = SchemaCatalog.load(settings.schemas_dir)  # a bad schema fails before anything starts
    if broker_port == registry_port:
        raise ConfigError("--broker-port and --registry-port must differ")
    stack = DevStack(host, broker_port, registry_port, log_dir=settings.state_dir / "dev")
    stack.check_ports()
    stop = _stop_event()
    try:
        stack.start()
        console.print(f"broker    {stack.bootstrap_servers}  (Tansu, in-memory storage)")
        console.print(f"registry  {stack.registry_url}")
        failed = print_outcomes(register_all(catalog, registry_client(stack.registry_url)))
        if failed:
            raise fail(f"{len(failed)} schema(s) not registered: {', '.join(o.subject for o in failed)}")
        console.print(f"logs      {stack.log_dir}")
        console.print("export these to point choreo commands and services at this stack:")
        console.print(f"  export CHOREO_BOOTSTRAP_SERVERS={stack.bootstrap_servers}")
        console.print(f"  export CHOREO_SCHEMA_REGISTRY_URL={stack.registry_url}")
        console.print("choreo dev ready — Ctrl-C to stop")
        _wait(stack, stop)
    finally:
        stack.stop()
    console.print("stopped")


def _wait(stack: DevStack, stop: threading.Event) -> None:
    """Until Ctrl-C / SIGTERM; a part that dies on its own ends the run with exit 1."""
    while not stop.wait(0.5):
        dead = stack.dead_child()
        if dead is not None:
            spec, process = dead
            raise fail(f"{spec.name} exited with code {process.returncode()} (log: {process.log_path})")
        if stack.broker is not None and not stack.broker.is_running():
            raise fail(f"the broker exited (log: {stack.log_dir / 'broker.log'})")
