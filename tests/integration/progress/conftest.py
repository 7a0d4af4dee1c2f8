"""Per-test shop topics (a copied schemas dir with suffixed topic folders), a per-test tasks topic and group."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from choreo.config import Settings
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.schemas.catalog import SchemaCatalog
from tests.integration.progress.helpers import JobWriter
from tests.integration.services.shop import SHOP_TOPICS, copy_schemas


@dataclass
class ProgressEnv:
    settings: Settings
    catalog: SchemaCatalog
    tasks_topic: str
    group: str
    writer: JobWriter
    kafka_config: dict[str, Any]


@pytest.fixture
def progress_env(kafka_config: dict[str, Any], schema_registry_url: str, unique: Callable[[str], str],
                 tmp_path: Path) -> ProgressEnv:
    suffix = unique("p").split("-", 1)[1]
    schemas_dir = copy_schemas(tmp_path / "schemas", suffix)
    settings = Settings(bootstrap_servers=kafka_config["bootstrap.servers"], schema_registry_url=schema_registry_url,
                        state_dir=tmp_path / "state", schemas_dir=schemas_dir, topic_partitions=4)
    tasks_topic = unique("choreo.tasks")
    ensure_topics(kafka_config, [TopicSpec(f"{t}-{suffix}", 4) for t in SHOP_TOPICS] + [TopicSpec(tasks_topic, 4)])
    catalog = SchemaCatalog.load(schemas_dir)
    return ProgressEnv(settings, catalog, tasks_topic, unique("choreo-progress"),
                       JobWriter(settings, catalog, tasks_topic), kafka_config)
from tests.integration.idempotency.conftest import pg_url  # noqa: E402,F401 - the PostgreSQL fixture, shared
