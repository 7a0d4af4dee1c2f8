"""`choreo run SERVICE`: one service as a long-lived consumer, until SIGTERM / Ctrl-C."""

from __future__ import annotations

import logging
import signal

import typer
from fastapi import FastAPI

from choreo.api import ApiDeps, ServiceApi
from choreo.cli.errors import friendly_errors
from choreo.config import Settings
from choreo.errors import ConfigError
from choreo.observability.http import BackgroundHTTPServer, add_health_routes, create_health_app
from choreo.runtime.gctune import tune_gc
from choreo.runtime.loader import load_service
from choreo.runtime.worker import Worker
from choreo.schemas.catalog import SchemaCatalog

log = logging.getLogger(__name__)


@friendly_errors
def run(
    service: str = typer.Argument(..., help="A reference service (e.g. 'payment') or package.module:attribute."),
    batch_size: int = typer.Option(500, min=1, max=100_000, help="Most records handled as one batch."),
    batch_wait_ms: int = typer.Option(
        10, min=0, max=60_000, help="Longest wait for a batch to fill; what arrived by then is handled."),
) -> None:
    """Run SERVICE as a consumer in its group; more processes of the same service share the partitions."""
    settings = Settings()
    bound = load_service(service).bind(SchemaCatalog.load(settings.schemas_dir))
    worker = Worker(bound, settings, batch_size=batch_size, batch_wait_s=batch_wait_ms / 1000)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    api, deps = bound.service.api, None
    if api is None:
        app: FastAPI = create_health_app(is_alive=lambda: True, is_ready=worker.ready.is_set)
        port = settings.http_port
    elif isinstance(api, ServiceApi):
        deps = ApiDeps(settings, bound.name)
        app, port = api.build(deps), api.port(settings)
        add_health_routes(app, is_alive=lambda: True, is_ready=worker.ready.is_set)
    else:
        raise ConfigError(f"{bound.name}: Service.api must be a choreo.api.ServiceApi, got {type(api).__name__}")
    try:
        http = BackgroundHTTPServer(app, settings.http_host, port).start()
    except OSError as exc:  # a taken port (the order API's 8000, say) is one clear line, not a traceback
        raise ConfigError(f"{bound.name}: cannot serve HTTP on {settings.http_host}:{port}: {exc.strerror or exc}"
                          ) from None
    if deps is None:
        log.info("service %s http on %s:%d (/metrics /healthz /readyz)", bound.name, http.host, http.port)
    else:
        log.info("service %s API on http://%s:%d (/openapi.json /metrics /healthz /readyz)",
                 bound.name, http.host, http.port)
    tune_gc(settings.gc_threshold)
    try:
        worker.run()
    finally:
        http.stop()
        if deps is not None:
            deps.close()
