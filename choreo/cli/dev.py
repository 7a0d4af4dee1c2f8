"""`choreo dev`: the whole choreography on one machine.

Start order: the embedded broker, the schema registry, every schema registered, every topic ensured (the
catalog's plus each service's retry and DLQ topics), then every reference service that exists in this
checkout as its own `choreo run NAME` process, and `choreo progress` once that command exists (see
choreo.cli.devplan). Ready is printed once every process answers its /readyz (consumers joined).

While running, a service or the registry that exits is restarted with backoff (choreo.cli.supervisor)
and the terminal says so; the broker exiting ends dev with exit 1 (its in-memory data is gone, so
carrying on would only mislead). Ctrl-C / SIGTERM / SIGHUP stop the services (SIGTERM, all at once),
then the registry, then the broker, and exit 0.

Children get one generated ``CHOREO_SERVICE_TOKEN`` (or the caller's), the stack's addresses, and
``CHOREO_SESSION_TIMEOUT_MS`` (6 s: a group join takes ~3 s on Tansu). Output: prefixed per process on
the terminal, raw in ``$CHOREO_STATE_DIR/dev/<name>.log``; pids in ``dev/pids.json``, the export lines
in ``dev/env``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
from pathlib import Path

import httpx
import typer
from rich.console import Console

from choreo.cli.devplan import REFERENCE_PROCESSES, DevPlan, assign_metrics_ports, is_available
from choreo.cli.errors import fail, friendly_errors
from choreo.cli.schemas import print_outcomes, quiet_http_logs
from choreo.cli.supervisor import Child, ProcessSpec, Supervisor
from choreo.config import Settings
from choreo.errors import ConfigError, InfrastructureError
from choreo.kafka.admin import ensure_topics
from choreo.kafka.embedded import EmbeddedBroker
from choreo.retry.router import RetryRouter
from choreo.runtime.loader import load_service
from choreo.runtime.worker import required_topics, topic_specs
from choreo.schemas.catalog import SchemaCatalog
from choreo.schemas.registration import register_all, registry_client
from choreo.testing.processes import choreo_command

console = Console(highlight=False, soft_wrap=True)


class Interrupted(Exception):
    """Ctrl-C / SIGTERM arrived while dev was still starting."""


class DevStack:
    """The broker, the supervised children, and the order they start and stop in."""

    def __init__(self, plan: DevPlan, settings: Settings, token: str, stop: threading.Event) -> None:
        self.plan, self.settings, self.token, self.stop_requested = plan, settings, token, stop
        self.log_dir = settings.state_dir / "dev"
        self.broker: EmbeddedBroker | None = None
        self.supervisor = Supervisor(console, self.log_dir, base_env=self.child_env(), on_spawn=self._spawned)

    def child_env(self) -> dict[str, str]:
        """What every child gets on top of dev's own environment."""
        plan = self.plan
        return {
            **os.environ,
            "CHOREO_BOOTSTRAP_SERVERS": plan.bootstrap_servers,
            "CHOREO_SCHEMA_REGISTRY_URL": plan.registry_url,
            "CHOREO_PROGRESS_URL": plan.progress_url,
            "CHOREO_ORDER_API_PORT": str(plan.order_api_port),
            "CHOREO_PROGRESS_PORT": str(plan.progress_port),
            "CHOREO_SESSION_TIMEOUT_MS": str(self.settings.session_timeout_ms),
            "CHOREO_SERVICE_TOKEN": self.token,
            "CHOREO_HTTP_HOST": plan.host,
            "PYTHONUNBUFFERED": "1",  # a child's prints reach the terminal as they happen, not per 8 KiB
        }

    def exports(self) -> list[str]:
        plan = self.plan
        return [f"export CHOREO_BOOTSTRAP_SERVERS={plan.bootstrap_servers}",
                f"export CHOREO_SCHEMA_REGISTRY_URL={plan.registry_url}",
                f"export CHOREO_ORDER_API_URL={plan.order_api_url}",
                f"export CHOREO_PROGRESS_URL={plan.progress_url}",
                f"export CHOREO_SERVICE_TOKEN={self.token}"]

    def start(self, catalog: SchemaCatalog, topics: set[str], timeout_s: float = 60.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.plan.external_bootstrap:
            self._forget_stores()
            self.broker = EmbeddedBroker(self.plan.host, self.plan.broker_port,
                                         log_path=self.log_dir / "broker.log", new_session=True)
            self.broker.start(timeout_s=timeout_s)
            self._write_pids()
        if not self.plan.external_registry:
            self.supervisor.start(ProcessSpec("registry", choreo_command(
                ["registry", "--host", self.plan.host, "--port", str(self.plan.registry_port)])))
            self._wait_ready({"registry": [self.plan.registry_url]}, timeout_s, path="/subjects")
        failed = print_outcomes(register_all(catalog, registry_client(self.plan.registry_url)))
        if failed:
            raise fail(f"{len(failed)} schema(s) not registered: {', '.join(o.subject for o in failed)}")
        self._ensure_topics(topics)
        for process in self.plan.processes:
            env = {"CHOREO_HTTP_PORT": str(self.plan.metrics_ports.get(process.name, 0))}
            self.supervisor.start(ProcessSpec(process.name, choreo_command(self.plan.argv(process)), env))
        self._wait_ready({p.name: self.plan.health_bases(p) for p in self.plan.processes}, timeout_s)

    def _forget_stores(self) -> None:
        """The embedded broker starts empty (in-memory), so the services' SQLite stores of an earlier run
        describe a world that is gone: timers of its orders would fire into this one, stock counts and
        marks would carry over. Start them afresh too (PostgreSQL stores, set by the user, are kept)."""
        if (self.settings.store_url or "").strip():
            return
        for process in self.plan.processes:
            for path in self.settings.state_dir.glob(f"{process.name}.sqlite3*"):
                path.unlink(missing_ok=True)

    def _spawned(self, child: Child) -> None:
        verb = f"restarted (restart {child.restarts})" if child.restarts else "started"
        self.supervisor.say(f"{child.spec.name} {verb}, pid {child.pid}", "bold")
        self._write_pids()

    def _ensure_topics(self, topics: set[str]) -> None:
        """`choreo topics ensure <every service>`: all topics exist before any consumer starts."""
        settings = self.settings.model_copy(update={"bootstrap_servers": self.plan.bootstrap_servers})
        result = ensure_topics(settings.librdkafka(), topic_specs(settings, topics))
        console.print(f"topics    {len(result.created)} created, {len(result.existing)} already there")

    def _wait_ready(self, bases: dict[str, list[str]], timeout_s: float, path: str = "/readyz") -> None:
        """Until each child answers ``path`` on one of its base URLs with anything but 5xx.

        A child exiting while dev starts is fatal (a broken module would otherwise crash-loop unseen).
        """
        waiting = dict(bases)
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as http:
            while waiting:
                if self.stop_requested.is_set():
                    raise Interrupted
                for name in list(waiting):
                    child = self.supervisor.children[name]
                    if not child.alive():
                        code = child.process.poll() if child.process else None
                        raise InfrastructureError(
                            f"{name} exited with code {code} while starting (log: {child.log_path}): "
                            f"{child.log_tail(1)}")
                    if any(_answers(http, base + path) for base in waiting[name]):
                        del waiting[name]
                if time.monotonic() > deadline:
                    raise InfrastructureError(f"not ready within {timeout_s:.0f}s: {', '.join(waiting)} "
                                              f"(logs in {self.log_dir})")
                if waiting:
                    time.sleep(0.1)

    def watch(self) -> None:
        """Until a stop is requested: restart exited children, fail if the broker dies."""
        while not self.stop_requested.wait(0.2):
            for exit_ in self.supervisor.poll():
                self.supervisor.say(f"{exit_.name} exited with code {exit_.code}, restarting "
                                    f"(restart {exit_.restart}) in {exit_.delay_s:.1f}s", "bold yellow")
            if self.broker is not None and not self.broker.is_running():
                self.broker = None
                raise fail(f"the broker exited; its in-memory data is gone, stopping dev "
                           f"(log: {self.log_dir / 'broker.log'})")

    def stop(self) -> None:
        """Services (and progress) first, then the registry, then the broker. Safe to call twice."""
        services = [p.name for p in self.plan.processes if p.name in self.supervisor.children]
        if services:
            console.print(f"stopping {', '.join(services)}")
            self.supervisor.stop(services)
        if "registry" in self.supervisor.children:
            console.print("stopping registry")
            self.supervisor.stop(["registry"])
        if self.broker is not None:
            console.print("stopping broker")
            self.broker.stop()
            self.broker = None
        (self.log_dir / "pids.json").unlink(missing_ok=True)

    def _write_pids(self) -> None:
        """``dev/pids.json``: {name: pid} of what runs now (tests and scripts find processes here)."""
        pids = {"dev": os.getpid(), **self.supervisor.pids()}
        if self.broker is not None and self.broker.pid is not None:
            pids["broker"] = self.broker.pid
        path = self.log_dir / "pids.json"
        text = json.dumps(pids, sort_keys=True)
        if not path.exists() or path.read_text() != text:
            path.with_suffix(".tmp").write_text(text)
            path.with_suffix(".tmp").replace(path)  # atomic: a reader never sees half a file


def _answers(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(url).status_code < 500
    except httpx.HTTPError:
        return False


def needed_topics(catalog: SchemaCatalog, services: list[str]) -> set[str]:
    """The catalog's topics plus each service's retry and DLQ topics (what `choreo topics ensure` makes).

    Loading every service here, before anything starts, turns a broken module into one clear line.
    """
    topics = set(catalog.topics())
    for name in services:
        try:
            bound = load_service(name).bind(catalog)
        except Exception as exc:  # the developer's bug to fix: name it, no traceback
            raise ConfigError(f"cannot load service {name}: {type(exc).__name__}: {exc}") from exc
        topics |= required_topics(bound, RetryRouter.for_service(bound).topics())
    return topics


def _stop_event() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _print_addresses(stack: DevStack) -> None:
    plan = stack.plan
    console.print(f"broker    {plan.bootstrap_servers}"
                  + ("" if plan.external_bootstrap else "  (Tansu, in-memory storage)"))
    console.print(f"registry  {plan.registry_url}")
    names = {p.name for p in plan.processes}
    console.print(f"order API {plan.order_api_url}" + ("" if "order" in names else "  (services/order.py missing)"))
    console.print(f"progress  {plan.progress_url}" + ("" if "progress" in names else "  (no `choreo progress` yet)"))
    for name, url in plan.metrics_urls().items():
        console.print(f"metrics   {name:<13} {url}")
    missing = [p.name for p in REFERENCE_PROCESSES if p.name not in names]
    if missing:
        console.print(f"not here  {', '.join(missing)} (not in this checkout yet)")
    console.print(f"logs      {stack.log_dir}/<name>.log, pids in {stack.log_dir / 'pids.json'}")
    console.print(f"export these to point choreo commands at this stack (also in {stack.log_dir / 'env'}):")
    for line in stack.exports():
        console.print(f"  {line}")


@friendly_errors
def dev(
    host: str = typer.Option("127.0.0.1", help="Interface every part listens on."),
    broker_port: int = typer.Option(9092, min=1, max=65535, help="Kafka port of the embedded broker."),
    registry_port: int = typer.Option(8081, min=1, max=65535, help="HTTP port of the schema registry."),
    order_api_port: int = typer.Option(8000, min=1, max=65535, envvar="CHOREO_ORDER_API_PORT",
                                       help="Port of the order API."),
    progress_port: int = typer.Option(8001, min=1, max=65535, envvar="CHOREO_PROGRESS_PORT",
                                      help="Port of the progress service."),
    metrics_base_port: int = typer.Option(
        8100, min=0, max=65000, help="Service N's /metrics is on this + N (0: free ports)."),
    bootstrap_servers: str = typer.Option(
        None, help="Use this Kafka cluster instead of starting the embedded broker."),
    registry_url: str = typer.Option(None, help="Use this schema registry instead of starting one."),
) -> None:
    """Run the whole choreography: broker, registry, schemas, topics and every reference service."""
    started = time.monotonic()
    quiet_http_logs()
    settings = Settings()
    catalog = SchemaCatalog.load(settings.schemas_dir)  # a bad schema fails before anything starts
    processes = [p for p in REFERENCE_PROCESSES if is_available(p)]
    plan = DevPlan(host, broker_port, registry_port, order_api_port, progress_port, processes,
                   external_bootstrap=bootstrap_servers, external_registry=registry_url)
    plan.check_ports()
    topics = needed_topics(catalog, plan.service_names)
    plan.metrics_ports = assign_metrics_ports(
        [p.name for p in processes if p.kind == "service" and p.api is None], host, metrics_base_port)
    token = os.environ.get("CHOREO_SERVICE_TOKEN") or secrets.token_urlsafe(32)
    stop = _stop_event()
    stack = DevStack(plan, settings, token, stop)
    try:
        stack.start(catalog, topics)
        _write_env_file(stack.log_dir / "env", stack.exports())
        _print_addresses(stack)
        console.print(f"choreo dev ready in {time.monotonic() - started:.1f}s — Ctrl-C to stop")
        stack.watch()
    except Interrupted:
        pass
    finally:
        stack.stop()
    console.print("stopped")


def _write_env_file(path: Path, lines: list[str]) -> None:
    """The export lines, readable by the owner only (the token is in them): `source .choreo/dev/env`."""
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)

