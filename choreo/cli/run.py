"""`choreo run SERVICE`: one service as a long-lived consumer, until SIGTERM / Ctrl-C."""

from __future__ import annotations

import logging
import signal

import typer

from choreo.cli.errors import friendly_errors
from choreo.config import Settings
from choreo.observability.http import BackgroundHTTPServer, create_health_app
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
    http = BackgroundHTTPServer(
        create_health_app(is_alive=lambda: True, is_ready=worker.ready.is_set),
        settings.http_host, settings.http_port,
    ).start()
    log.info("service %s http on %s:%d (/metrics /healthz /readyz)", bound.name, http.host, http.port)
    tune_gc(settings.gc_threshold)
    try:
        worker.run()
    finally:
        http.stop()
