"""The progress service as one object: the flow, the consumer on the calling thread, HTTP on a daemon thread.

    progress = ProgressService.from_services([order.service, payment.service, ...], settings,
                                             host="127.0.0.1", port=8001)
    progress.run()      # until progress.stop() (thread-safe) — `choreo progress` wires SIGTERM/Ctrl-C to it

``group`` and ``tasks_topic`` default to the contract's (``choreo-progress``, ``choreo.tasks``); tests pass
their own so runs do not share offsets or records.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from choreo.config import Settings
from choreo.errors import ConfigError
from choreo.idempotency import open_store
from choreo.observability.http import BackgroundHTTPServer
from choreo.progress.app import create_progress_app
from choreo.progress.consumer import GROUP, ProgressConsumer
from choreo.progress.flow import Flow, bind_services, build_flow
from choreo.progress.store import SERVICE, ReadPool
from choreo.schemas.catalog import SchemaCatalog
from choreo.service import Service
from choreo.tasks import TASKS_TOPIC

log = logging.getLogger(__name__)


class ProgressService:
    def __init__(self, flow: Flow, settings: Settings, *, host: str = "127.0.0.1", port: int = 8001,
                 group: str = GROUP, tasks_topic: str = TASKS_TOPIC, **consumer_options: object) -> None:
        self.flow = flow
        self.settings = settings
        store = open_store(settings, SERVICE)
        self.pool = ReadPool(store)
        self._store = store
        self.http: BackgroundHTTPServer | None = None
        self.host, self.port = host, port
        base = (settings.progress_url or "").rstrip("/") or f"http://{host}:{port}"
        self.consumer = ProgressConsumer(flow, settings, base_url=base, group=group, tasks_topic=tasks_topic,
                                         store=store.reopen(), **consumer_options)  # type: ignore[arg-type]
        self.app = create_progress_app(settings, self.pool, self.consumer.ready.is_set)

    @classmethod
    def from_services(cls, services: Sequence[Service], settings: Settings, **options: object) -> ProgressService:
        catalog = SchemaCatalog.load(settings.schemas_dir)
        return cls(build_flow(bind_services(services, catalog), catalog), settings, **options)  # type: ignore[arg-type]

    def start_http(self) -> BackgroundHTTPServer:
        try:
            self.http = BackgroundHTTPServer(self.app, self.host, self.port).start()
        except OSError as exc:
            raise ConfigError(f"progress: cannot serve HTTP on {self.host}:{self.port}: {exc.strerror or exc}"
                              ) from None
        self.port = self.http.port
        if not self.settings.progress_url:
            self.consumer.base_url = f"http://{self.host}:{self.port}"
        return self.http

    def run(self) -> None:
        """Serve HTTP and consume until :meth:`stop`; everything is closed on the way out."""
        if self.http is None:
            self.start_http()
        log.info("progress on http://%s:%d (/jobs/{job_id} /jobs /metrics /healthz /readyz /openapi.json)",
                 self.host, self.port)
        try:
            self.consumer.run()
        finally:
            if self.http is not None:
                self.http.stop()
            self.pool.close()
            self.app.state.shared_state_table.close()
            self._store.close()

    def stop(self) -> None:
        self.consumer.stop()
