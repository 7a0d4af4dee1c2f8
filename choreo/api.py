"""An HTTP API served by `choreo run` beside a service's consumer (e.g. the order service's Order API).

    def create_app(deps: ApiDeps) -> FastAPI:
        app = FastAPI(title="orders")
        ...                                  # deps.publisher(), deps.open_store(), deps.settings
        return app

    service = Service("order", api=ServiceApi(create_app, port_setting="order_api_port"))

`choreo run` builds the app once with an :class:`ApiDeps`, adds ``/metrics``, ``/healthz`` and
``/readyz`` to it, and serves it on ``settings.http_host`` at the port named by ``port_setting`` (a
:class:`~choreo.config.Settings` attribute, so ``CHOREO_ORDER_API_PORT`` moves it; 0 = a free port,
logged). A service without ``api`` keeps the bare health app on ``CHOREO_HTTP_PORT``.

The app runs on uvicorn's threads, not the consumer's: it gets its own publisher and its own store
connection (the consumer's store is not shared across threads).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from choreo.config import Settings
from choreo.errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from choreo.envelope import Envelope
    from choreo.events import Event
    from choreo.group_publish import GroupPublisher
    from choreo.idempotency import IdempotencyStore
    from choreo.publisher import Publisher


class ApiDeps:
    """What an API factory gets: the settings, the service's name, a publisher and a store opener.

    The publisher is created on first use (so building the app needs no broker) and closed by
    :meth:`close`. Request threads publish through :meth:`publish`, which is thread-safe and lets
    concurrent requests share one acknowledgement wait; ``publisher()`` itself is one thread at a time.
    """

    def __init__(self, settings: Settings, service: str,
                 publisher_factory: Callable[[], Publisher] | None = None,
                 store_opener: Callable[[], IdempotencyStore] | None = None) -> None:
        self.settings = settings
        self.service = service
        self._publisher_factory = publisher_factory or self._default_publisher
        self._store_opener = store_opener or self._default_store
        self._publisher: Publisher | None = None
        self._group: GroupPublisher | None = None
        self._create_lock = threading.Lock()

    def _default_publisher(self) -> Publisher:
        from choreo.publisher import Publisher  # imported late: building an app needs no Kafka client

        return Publisher.from_settings(self.settings, source=self.service)

    def _default_store(self) -> IdempotencyStore:
        from choreo.idempotency import open_store

        return open_store(self.settings, self.service)

    def publisher(self) -> Publisher:
        """The app's publisher (its ``ce_source`` is the service name), created once."""
        with self._create_lock:
            return self.publisher_unlocked()

    def publish(self, event: Event, *, correlation_id: str | None = None) -> Envelope:
        """Publish ``event`` and return once the broker acknowledged it (ProduceError otherwise). Safe
        from many request threads at once: concurrent callers share one flush (choreo.group_publish)."""
        with self._create_lock:
            if self._group is None:
                from choreo.group_publish import GroupPublisher

                self._group = GroupPublisher(self.publisher_unlocked())
            group = self._group
        return group.publish(event, correlation_id=correlation_id)

    def publisher_unlocked(self) -> Publisher:
        if self._publisher is None:
            self._publisher = self._publisher_factory()
        return self._publisher

    def open_store(self) -> IdempotencyStore:
        """A new connection to the service's store (SQLite file or PostgreSQL), for the app's own use."""
        return self._store_opener()

    def close(self) -> None:
        with self._create_lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None
                self._group = None


@dataclass(frozen=True)
class ServiceApi:
    """``factory(deps)`` builds the FastAPI app; ``port_setting`` names the Settings field of its port."""

    factory: Callable[[ApiDeps], FastAPI]
    port_setting: str

    def port(self, settings: Settings) -> int:
        """The configured port; ConfigError naming the setting if it is not a port number."""
        value = getattr(settings, self.port_setting, None)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
            raise ConfigError(f"ServiceApi.port_setting {self.port_setting!r} names no port setting "
                              f"(got {value!r}); use a Settings field such as 'order_api_port'")
        return value

    def build(self, deps: ApiDeps) -> FastAPI:
        from fastapi import FastAPI

        app = self.factory(deps)
        if not isinstance(app, FastAPI):
            raise ConfigError(f"{deps.service}: the API factory returned {type(app).__name__}, not a FastAPI app")
        return app
