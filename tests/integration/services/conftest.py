"""Fixtures for the reference services: one isolated shop environment per test module (see shop.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.idempotency.conftest import pg_url  # noqa: F401 - re-exported fixture
from tests.integration.services.shop import ShopEnv, make_env


@pytest.fixture(scope="module")
def shop(kafka_config: dict[str, Any], schema_registry_url: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopEnv]:
    """Suffixed topics, schemas and state dir for this module; the tap follows every shop topic."""
    env = make_env(kafka_config, schema_registry_url, tmp_path_factory.mktemp("shop"))
    yield env
    env.tap.close()
