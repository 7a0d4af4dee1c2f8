"""Run the registry: claim the port, rebuild the state from Kafka, then serve HTTP until a signal.

Order matters: the port is bound first (a taken port fails in milliseconds, before any Kafka work), the
state is fully rebuilt before the socket listens (no request ever sees a half-loaded registry), and
SIGINT/SIGTERM stop it cleanly at any point — during the rebuild as well as while serving.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

import uvicorn

from choreo.config import Settings, get_settings
from choreo.errors import ConfigError
from choreo.kafka.embedded import port_is_free
from choreo.registry.app import create_app
from choreo.registry.log import KafkaSchemaLog
from choreo.registry.store import SchemaStore

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stopped(BaseException):
    """A stop signal arrived before the server was up (BaseException: no ``except Exception`` eats it)."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signal.Signals(signum).name)


def _bind(host: str, port: int) -> socket.socket:
    """Claim ``host:port`` now; uvicorn listens on it later. ConfigError if it is taken."""
    in_use = ConfigError(f"cannot start the registry: port {port} on {host} is already in use")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if family == socket.AF_INET and not port_is_free(host, port):
        raise in_use
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # Nagle's algorithm meets delayed ACKs and every response takes ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise in_use from None
    sock.set_inheritable(True)
    return sock


def serve(host: str, port: int, settings: Settings | None = None, *,
          announce: Callable[[str], None] = log.info) -> None:
    """Serve the registry on ``host:port`` until SIGINT/SIGTERM, then return.

    Raises ConfigError (port taken, bad topic) or InfrastructureError (broker unreachable) before serving.
    """
    settings = settings or get_settings()
    sock = _bind(host, port)
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in _STOP_SIGNALS}
    store: SchemaStore | None = None
    try:
        started = time.monotonic()
        store = SchemaStore(KafkaSchemaLog(settings).open())
        records = store.load()
        server = uvicorn.Server(uvicorn.Config(
            create_app(store), log_config=None, access_log=log.isEnabledFor(logging.DEBUG),
            lifespan="off", timeout_graceful_shutdown=5,
        ))
        # uvicorn installs its own handlers while it runs and re-raises the signal through these after
        # its graceful shutdown: make that a no-op instead of an exception in the middle of its cleanup.
        for sig in _STOP_SIGNALS:
            signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
        seconds = time.monotonic() - started
        announce(f"registry listening on http://{host}:{port} (topic {settings.registry_topic!r} at "
                 f"{settings.bootstrap_servers}, {records} records in {seconds:.2f}s) — Ctrl-C to stop")
        server.run(sockets=[sock])
    except _Stopped as stop:
        log.info("registry stopped by %s during start", stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if store is not None:
            store.close()
        sock.close()
