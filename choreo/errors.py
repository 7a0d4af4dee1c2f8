"""The error tree: one root, split by phase (setup, consume, handle, produce) and kind.

    ChoreoError
    ├── ConfigError             bad settings or a bad service declaration (fails at start)
    ├── InfrastructureError     the broker / registry / store could not be reached or started
    ├── ConsumeError            a record could not be turned into an event
    │   └── DeserializationError    garbage bytes, unknown schema id, schema mismatch (poison)
    ├── HandlerError            raised by user code, classified for retry routing
    │   ├── RetryableError          transient: try again later
    │   └── PermanentError          will never succeed: dead-letter at once
    └── ProduceError            an event was refused before sending or not acknowledged
        └── EventValidationError    a payload that does not fit its schema (nothing was sent)

Errors that end in a dead letter carry the raw record (``record``) so nothing is lost.
"""

from __future__ import annotations

from typing import Any


class ChoreoError(Exception):
    """Root of every error choreo raises on purpose."""


class ConfigError(ChoreoError):
    """A setting or declaration is wrong; raised at start, before any message moves."""


class InfrastructureError(ChoreoError):
    """A broker, registry or store could not be started or reached."""


class ConsumeError(ChoreoError):
    """A consumed record could not become an event. ``record`` is the raw Kafka message."""

    def __init__(self, message: str, *, record: Any = None) -> None:
        super().__init__(message)
        self.record = record


class DeserializationError(ConsumeError):
    """The value is not a decodable event: poison, dead-lettered without retries."""


class HandlerError(ChoreoError):
    """Base for errors user handlers raise to steer retry routing."""


class RetryableError(HandlerError):
    """Transient failure: the event goes to the next retry topic."""


class PermanentError(HandlerError):
    """The event can never be handled: straight to the dead-letter topic."""


class ProduceError(ChoreoError):
    """An event could not be produced, or the broker did not acknowledge it."""

    def __init__(self, message: str, *, topic: str | None = None, key: str | None = None,
                 fatal: bool = False) -> None:
        super().__init__(message)
        self.topic = topic
        self.key = key
        self.fatal = fatal  # the producer instance is unusable (e.g. idempotence fenced): restart


class EventValidationError(ProduceError):
    """The payload does not fit its schema; raised before anything is sent."""
