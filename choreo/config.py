"""One settings object, read once from the environment (prefix ``CHOREO_``).

librdkafka options pass through untouched: either as JSON in ``CHOREO_KAFKA_CONFIG``
(``{"security.protocol": "SASL_SSL", ...}``) or one per variable, ``CHOREO_KAFKA_<OPTION>``
with dots written as underscores (``CHOREO_KAFKA_SASL_MECHANISM=PLAIN`` → ``sasl.mechanism``).
librdkafka option names contain no underscores, so the mapping is unambiguous.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_KAFKA_OPTION_PREFIX = "CHOREO_KAFKA_"
_RESERVED = {"CHOREO_KAFKA_CONFIG"}


def kafka_options_from_environ(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """librdkafka options spelled ``CHOREO_KAFKA_SASL_MECHANISM=PLAIN`` → ``{"sasl.mechanism": "PLAIN"}``."""
    options: dict[str, str] = {}
    for name, value in environ.items():
        if name.startswith(_KAFKA_OPTION_PREFIX) and name not in _RESERVED:
            option = name[len(_KAFKA_OPTION_PREFIX):].lower().replace("_", ".")
            options[option] = value
    return options


class Settings(BaseSettings):
    """Everything choreo reads from the environment. Validated once, at start."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    schema_registry_url: str = "http://127.0.0.1:8081"
    state_dir: Path = Path(".choreo")
    store_url: str | None = None
    schemas_dir: Path = Path("schemas")
    kafka_config: dict[str, str] = Field(default_factory=dict)

    # Idempotency store: how long processed marks are kept, how often expired ones are swept.
    store_retention: timedelta = timedelta(days=7)
    store_expire_interval: float = Field(default=60.0, gt=0)

    # Topic defaults used by `choreo topics ensure` and the services on start.
    topic_partitions: int = Field(default=8, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)

    # Consumer group timing. librdkafka's 45 s default makes a join take ~23 s on Tansu (SPEC §1).
    session_timeout_ms: int = Field(default=6000, ge=1000)
    fetch_wait_max_ms: int = Field(default=10, ge=0)

    # Schema registry server (`choreo registry`).
    registry_topic: str = "_schemas"

    # Escalation: where dead-letter alerts go (unset: logged), and the progress resource to link to.
    alert_webhook_url: str | None = None
    progress_url: str | None = None

    # `choreo run` raises Python's generation-0 GC threshold to at least this and freezes the objects
    # alive at start (see choreo.runtime.gctune); 0 leaves the interpreter's defaults.
    gc_threshold: int = Field(default=50_000, ge=0)

    # The reference shop and `choreo dev` (SPEC ports): the order API, the progress service, a job's
    # default deadline (seconds after it is placed), and the bearer token the services share.
    order_api_port: int = Field(default=8000, ge=0, le=65535)
    progress_port: int = Field(default=8001, ge=0, le=65535)
    job_max_ttl_s: float = Field(default=30.0, gt=0)
    service_token: str | None = None

    # Task records on choreo.tasks (every step's outcome, for the progress service); false turns them off.
    task_records: bool = True

    # HTTP port for /metrics, /healthz, /readyz of a running service (0 = pick a free port).
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535)

    @field_validator("bootstrap_servers")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name at least one host:port")
        return value.strip()

    def librdkafka(self, defaults: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
        """librdkafka config, later entries winning: bootstrap servers, choreo's ``defaults``,
        the user's pass-through options, then ``overrides`` (settings correctness depends on)."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        config.update(defaults or {})
        config.update(self.kafka_config)
        config.update(kafka_options_from_environ(os.environ))
        config.update(overrides)
        return config

    def registry_client_config(self) -> dict[str, Any]:
        """Config dict for ``confluent_kafka.schema_registry.SchemaRegistryClient``."""
        return {"url": self.schema_registry_url}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use."""
    return Settings()
