"""choreo's schema registry: the Confluent REST API v1 over a compacted Kafka topic (`choreo registry`)."""

from choreo.registry.app import create_app
from choreo.registry.compat import CompatibilityLevel
from choreo.registry.log import KafkaSchemaLog
from choreo.registry.server import serve
from choreo.registry.store import SchemaStore

__all__ = ["CompatibilityLevel", "KafkaSchemaLog", "SchemaStore", "create_app", "serve"]
