"""A real shared-state server: ``create_state_app`` on uvicorn in a thread, over SQLite or PostgreSQL."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from choreo.config import Settings
from choreo.observability.http import BackgroundHTTPServer
from choreo.progress.state_api import create_state_app
from choreo.testing.processes import wait_until
from tests.integration.idempotency.conftest import pg_url  # noqa: F401 - re-exported fixture


@dataclass
class StateServer:
    url: str  # base URL: the resource is <url>/jobs/<job_id>/state
    token: str
    settings: Settings

    def state_url(self, job_id: str) -> str:
        return f"{self.url}/jobs/{job_id}/state"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextmanager
def serve(settings: Settings, port: int = 0) -> Iterator[str]:
    """Serve ``create_state_app(settings)`` on ``port`` (0: a free one) until the block ends; yields the
    base URL."""
    app = create_state_app(settings)
    server = BackgroundHTTPServer(app, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{server.port}"

    def answers() -> bool:
        try:
            httpx.get(f"{url}/openapi.json", timeout=1)
            return True
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, 15, message="shared state server answers")
        yield url
    finally:
        server.stop()
        app.state.shared_state_table.close()


def settings_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest, token: str | None) -> Settings:
    store_url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    return Settings(state_dir=tmp_path / "state", store_url=store_url, service_token=token)


@pytest.fixture(params=["sqlite", "postgresql"])
def state_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateServer]:
    token = secrets.token_urlsafe(32)
    settings = settings_for(request.param, tmp_path, request, token)
    with serve(settings) as url:
        yield StateServer(url, token, settings)


@pytest.fixture
def new_job() -> Callable[[], str]:
    """Fresh job ids (uuid4, like the runtime's): PostgreSQL's table is shared by every test."""
    return lambda: str(uuid.uuid4())
