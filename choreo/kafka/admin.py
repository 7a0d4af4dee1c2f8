"""Topic administration: create what is missing, leave what exists alone (idempotent)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from choreo.errors import ConfigError, InfrastructureError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    """A topic as choreo wants it. Existing topics are never altered (CreatePartitions is not portable)."""

    name: str
    partitions: int = 8
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EnsureResult:
    created: list[str]
    existing: list[str]


def ensure_topics(
    client_config: Mapping[str, Any], specs: Iterable[TopicSpec], timeout_s: float = 30.0
) -> EnsureResult:
    """Create every topic in ``specs`` that does not exist yet. Safe to call from many processes at once."""
    admin = AdminClient(dict(client_config))
    wanted = {spec.name: spec for spec in specs}
    try:
        existing_names = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise InfrastructureError(f"cannot list topics at {client_config.get('bootstrap.servers')}: {exc}") from exc
    missing = [spec for name, spec in wanted.items() if name not in existing_names]
    created: list[str] = []
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config)) for s in missing],
            operation_timeout=timeout_s, request_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                # Another process won the race: the topic exists, which is all we wanted.
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise InfrastructureError(f"cannot create topic {name!r}: {exc}") from exc
    existing = sorted(set(wanted) - set(created))
    if created:
        log.info("created topics %s", ", ".join(sorted(created)))
    return EnsureResult(created=sorted(created), existing=existing)


def partition_count(client_config: Mapping[str, Any], topic: str, timeout_s: float = 10.0) -> int | None:
    """Number of partitions of ``topic``, None if it does not exist.

    Lists all topics rather than asking for ``topic``: a metadata request naming a topic can create it on
    brokers that auto-create topics, and asking must never create. ConfigError if librdkafka refuses
    ``client_config``; InfrastructureError if the broker does not answer within ``timeout_s``.
    librdkafka's own log is off unless ``client_config`` sets ``log_level``: the raised error says it all.
    """
    try:
        admin = AdminClient({"log_level": 0, **client_config})
    except KafkaException as exc:
        raise ConfigError(f"invalid Kafka client settings: {exc}") from exc
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise InfrastructureError(
            f"cannot reach the broker at {client_config.get('bootstrap.servers')}: {exc}") from exc
    info = metadata.topics.get(topic)
    if info is None or info.error is not None:
        return None
    return len(info.partitions)
