"""Fixtures for runtime tests: per-test topics and schemas, settings, a worker on a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from choreo.config import Settings
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.publisher import Publisher
from choreo.runtime.worker import Worker
from choreo.schemas.catalog import SchemaCatalog
from choreo.service import Service
from choreo.testing.processes import wait_until
from tests.support.echo import write_schemas


@dataclass
class EchoEnv:
    settings: Settings
    in_topic: str
    out_topic: str
    catalog: SchemaCatalog
    kafka_config: dict[str, Any]

    def publisher(self) -> Publisher:
        return Publisher.from_settings(self.settings, source="test")


@pytest.fixture
def echo_env(kafka_config: dict[str, Any], schema_registry_url: str, unique: Callable[[str], str],
             tmp_path: Path) -> EchoEnv:
    in_topic, out_topic = unique("pings"), unique("pongs")
    schemas_dir = write_schemas(tmp_path / "schemas", in_topic, out_topic)
    settings = Settings(bootstrap_servers=kafka_config["bootstrap.servers"], schema_registry_url=schema_registry_url,
                        state_dir=tmp_path / "state", schemas_dir=schemas_dir, topic_partitions=8)
    ensure_topics(kafka_config, [TopicSpec(in_topic, 8), TopicSpec(out_topic, 8)])
    return EchoEnv(settings, in_topic, out_topic, SchemaCatalog.load(schemas_dir), kafka_config)


@contextmanager
def running(service: Service, env: EchoEnv, **worker_options: Any) -> Iterator[Worker]:
    """Run ``service`` on a thread until the block ends; fail the test if the worker crashed."""
    worker = Worker(service.bind(env.catalog), env.settings, **worker_options)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"worker-{service.name}", daemon=True)
    thread.start()
    try:
        # Topics (retry, DLQ) exist and partitions are assigned before the test reads anything.
        wait_until(lambda: worker.ready.is_set() or bool(errors), 60, message=f"{service.name} assigned")
        yield worker
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive(), "worker did not stop within 30 s"
    if errors:
        raise errors[0]


@dataclass
class TimedEnv(EchoEnv):
    side_topic: str = ""


@pytest.fixture
def timed_env(kafka_config: dict[str, Any], schema_registry_url: str, unique: Callable[[str], str],
              tmp_path: Path) -> TimedEnv:
    """Topics and schemas of tests/support/timed.py (Start/Stop/Left in, Right on the side, outputs out)."""
    from tests.support.timed import write_timed_schemas

    topics = {"in": unique("starts"), "side": unique("rights"), "out": unique("reminders")}
    schemas_dir = write_timed_schemas(tmp_path / "schemas", topics)
    settings = Settings(bootstrap_servers=kafka_config["bootstrap.servers"], schema_registry_url=schema_registry_url,
                        state_dir=tmp_path / "state", schemas_dir=schemas_dir, topic_partitions=4)
    ensure_topics(kafka_config, [TopicSpec(t, 4) for t in topics.values()])
    return TimedEnv(settings, topics["in"], topics["out"], SchemaCatalog.load(schemas_dir), kafka_config,
                    side_topic=topics["side"])


from tests.integration.idempotency.conftest import pg_url  # noqa: E402,F401 - the PostgreSQL fixture, shared
