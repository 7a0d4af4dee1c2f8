"""`choreo progress [SERVICE…]`: the progress service — follows the jobs, serves ``GET /jobs/{job_id}``."""

from __future__ import annotations

import pkgutil
import signal
from pathlib import Path

import typer

from choreo.cli.errors import friendly_errors
from choreo.config import Settings
from choreo.errors import ConfigError
from choreo.runtime.loader import REFERENCE_PACKAGE, load_service
from choreo.service import Service
from choreo.tasks import TASKS_TOPIC

GROUP = "choreo-progress"  # choreo.progress.consumer.GROUP, without importing the consumer for --help


def reference_services() -> list[str]:
    """Every module of ``services/`` (in the current directory or installed) that defines ``service``."""
    import importlib

    try:
        package = importlib.import_module(REFERENCE_PACKAGE)
    except ModuleNotFoundError:
        return []
    names = []
    for module in pkgutil.iter_modules([str(Path(p)) for p in package.__path__]):
        try:
            service = getattr(importlib.import_module(f"{REFERENCE_PACKAGE}.{module.name}"), "service", None)
        except Exception:  # noqa: BLE001 - a helper module that fails to import is not a service
            continue
        if isinstance(service, Service):
            names.append(module.name)
    return sorted(names)


@friendly_errors
def progress(
    services: list[str] = typer.Argument(None, help="Services whose flow to follow: reference names or "
                                         "package.module:attribute (none: every reference service)."),
    host: str = typer.Option("127.0.0.1", help="Interface to serve HTTP on."),
    port: int = typer.Option(None, min=0, max=65535, help="HTTP port (default CHOREO_PROGRESS_PORT, 8001)."),
    tasks_topic: str = typer.Option(TASKS_TOPIC, hidden=True, help="Task records topic (tests)."),
    group: str = typer.Option(GROUP, hidden=True, help="Consumer group (tests)."),
) -> None:
    """Follow every job (task records and domain topics) and serve its progress at GET /jobs/{job_id}."""
    from choreo.progress.service import ProgressService  # the app and its imports only when it runs

    settings = Settings()
    names = services or reference_services()
    if not names:
        raise ConfigError("no services to follow: name them (e.g. `choreo progress myshop.billing:service`)")
    loaded = [load_service(name) for name in names]
    service = ProgressService.from_services(loaded, settings, host=host, tasks_topic=tasks_topic, group=group,
                                            port=settings.progress_port if port is None else port)
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    signal.signal(signal.SIGINT, lambda *_: service.stop())
    service.start_http()
    service.run()
