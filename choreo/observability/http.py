"""The HTTP side of every long-running service: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``.

Served by uvicorn on a daemon thread, so the consumer loop keeps the main thread (and its signals).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)


def add_health_routes(app: FastAPI, is_alive: Callable[[], bool], is_ready: Callable[[], bool]) -> None:
    """``/metrics`` (Prometheus text), ``/healthz`` and ``/readyz`` (200 or 503) on ``app``."""

    @app.get("/metrics", summary="Prometheus metrics (text exposition format)")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", summary="200 while the process is alive, else 503")
    def healthz() -> Response:
        ok = is_alive()
        return Response('{"status":"ok"}' if ok else '{"status":"down"}', status_code=200 if ok else 503,
                        media_type="application/json")

    @app.get("/readyz", summary="200 once the consumer has its partitions, else 503")
    def readyz() -> Response:
        ok = is_ready()
        return Response('{"status":"ready"}' if ok else '{"status":"starting"}', status_code=200 if ok else 503,
                        media_type="application/json")


def create_health_app(is_alive: Callable[[], bool], is_ready: Callable[[], bool]) -> FastAPI:
    app = FastAPI(title="choreo service", docs_url=None, redoc_url=None)  # /openapi.json, as every HTTP service
    add_health_routes(app, is_alive, is_ready)
    return app


class BackgroundHTTPServer:
    """uvicorn on a daemon thread. ``port=0`` binds a free port; :attr:`port` tells which."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say they are TCP,
        # and without it every small response waits ~40 ms for a delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = host, int(self._socket.getsockname()[1])
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._serve, name="choreo-http", daemon=True)

    def _serve(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> BackgroundHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
