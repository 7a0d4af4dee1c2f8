"""choreo: event choreography on Kafka.

The public API: declare events and services, publish root events, run workers.
"""

from choreo.config import Settings, get_settings
from choreo.context import Context
from choreo.envelope import Envelope
from choreo.errors import (
    ChoreoError,
    ConfigError,
    DeserializationError,
    EventValidationError,
    PermanentError,
    ProduceError,
    RetryableError,
)
from choreo.events import Event, JobEnd
from choreo.publisher import Publisher
from choreo.service import Service

__all__ = [
    "ChoreoError", "ConfigError", "Context", "DeserializationError", "Envelope", "Event",
    "EventValidationError", "JobEnd", "PermanentError", "ProduceError", "Publisher", "RetryableError",
    "Service", "Settings", "get_settings",
]
