"""Fixtures for runtime tests: per-test topics and schemas, settings, a worker on a thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from choreo.config import Settings
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.publisher import Publisher
from choreo.schemas.catalog import SchemaCatalog
from tests.support.echo import write_schemas
from tests.support.workers import running as run_on_thread


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


running = run_on_thread  # the runtime tests' name for it (tests/support/workers.py)


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
