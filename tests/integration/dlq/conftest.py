"""DLQ tests reuse the runtime fixtures: per-test Ping/Pong topics and schemas, a worker on a thread."""

from __future__ import annotations

from tests.integration.runtime.conftest import echo_env  # noqa: F401
