"""pytest plugin (entry point ``choreo``): a real broker and a real schema registry for tests.

Broker, in order of preference:
1. ``CHOREO_BOOTSTRAP_SERVERS`` set → that cluster;
2. ``CHOREO_TEST_BROKER=testcontainers`` → Apache Kafka in Docker via testcontainers;
3. otherwise the embedded Tansu broker on a free port, started once per session.

Each test gets fresh topic and group names from ``unique``; nothing is shared between tests but the servers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from choreo.kafka.embedded import EmbeddedBroker, free_port
from choreo.testing.processes import ChoreoProcess


def _external_bootstrap() -> str | None:
    return os.environ.get("CHOREO_BOOTSTRAP_SERVERS") or None


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker | None]:
    """The embedded broker this session started, or None when tests use an external cluster."""
    if _external_bootstrap() or os.environ.get("CHOREO_TEST_BROKER") == "testcontainers":
        yield None
        return
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with EmbeddedBroker("127.0.0.1", free_port(), log_path=log_path) as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: EmbeddedBroker | None) -> Iterator[str]:
    """``host:port`` of the broker every integration test talks to."""
    external = _external_bootstrap()
    if external:
        yield external
    elif kafka_broker is not None:
        yield kafka_broker.bootstrap_servers
    else:
        from testcontainers.kafka import KafkaContainer  # only needed on this path

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()


@pytest.fixture(scope="session")
def kafka_config(kafka_bootstrap: str) -> dict[str, Any]:
    """Base librdkafka config for test clients (short session timeout: see SPEC §1)."""
    return {"bootstrap.servers": kafka_bootstrap}


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("orders")`` → ``"orders-3f9c1a2b"``: fresh topic/group/subject names per test."""
    suffix = uuid.uuid4().hex[:8]
    return lambda prefix: f"{prefix}-{suffix}"


def start_registry(bootstrap: str, log_dir: Path, *, topic: str = "_schemas",
                   port: int | None = None) -> tuple[ChoreoProcess, str]:
    """Start ``choreo registry`` as a child process; return it and its base URL once it answers."""
    port = port or free_port()
    process = ChoreoProcess(
        ["registry", "--host", "127.0.0.1", "--port", str(port)],
        env={"CHOREO_BOOTSTRAP_SERVERS": bootstrap, "CHOREO_REGISTRY_TOPIC": topic},
        log_path=log_dir / f"registry-{port}.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    process.wait_http(f"{url}/subjects", timeout_s=60)
    return process, url


@pytest.fixture(scope="session")
def schema_registry_url(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real `choreo registry` process for this session (or ``CHOREO_SCHEMA_REGISTRY_URL``)."""
    external = os.environ.get("CHOREO_TEST_SCHEMA_REGISTRY_URL")
    if external:
        yield external
        return
    topic = f"_schemas-{uuid.uuid4().hex[:8]}"
    process, url = start_registry(kafka_bootstrap, tmp_path_factory.mktemp("registry"), topic=topic)
    try:
        yield url
    finally:
        process.terminate()
