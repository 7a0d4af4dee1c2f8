"""Retry policy: which errors are worth another try, and how long to wait before each.

Delays grow exponentially with jitter and are capped: retries compound across the steps of a saga,
so an uncapped backoff on every hop turns a short outage into an hours-long job.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ValidationError

from choreo.errors import (
    ConfigError,
    DeserializationError,
    EventValidationError,
    PermanentError,
    RetryableError,
)

Verdict = Literal["retry", "dead-letter"]

# Errors that no amount of waiting fixes (4xx-like): bad data, bad declarations, explicit PermanentError.
DEFAULT_PERMANENT: tuple[type[BaseException], ...] = (
    PermanentError, ValidationError, EventValidationError, DeserializationError, ConfigError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """``delays[i]`` is the wait before retry ``i + 1``; ``len(delays)`` retries, then the DLQ.

    Unknown exceptions are retryable; ``permanent_on`` go straight to the DLQ; ``retry_on`` wins
    over ``permanent_on`` (e.g. retry one specific ValidationError subclass).
    """

    delays: tuple[float, ...] = (1.0, 5.0, 25.0)
    jitter: float = 0.1
    max_delay: float = 300.0
    retry_on: tuple[type[BaseException], ...] = (RetryableError,)
    permanent_on: tuple[type[BaseException], ...] = field(default=DEFAULT_PERMANENT)

    def __post_init__(self) -> None:
        if any(d < 0 for d in self.delays):
            raise ConfigError("retry delays must be >= 0")
        if not 0 <= self.jitter < 1:
            raise ConfigError("jitter is a fraction in [0, 1)")

    @classmethod
    def exponential(cls, first: float = 1.0, factor: float = 5.0, attempts: int = 3,
                    max_delay: float = 300.0, **options: object) -> RetryPolicy:
        """``first, first*factor, …`` for ``attempts`` retries, each capped at ``max_delay``."""
        delays = tuple(min(first * factor**i, max_delay) for i in range(attempts))
        return cls(delays=delays, max_delay=max_delay, **options)  # type: ignore[arg-type]

    @property
    def retries(self) -> int:
        return len(self.delays)

    def classify(self, error: BaseException) -> Literal["retryable", "permanent"]:
        if isinstance(error, self.retry_on):
            return "retryable"
        if isinstance(error, self.permanent_on):
            return "permanent"
        return "retryable"

    def decide(self, error: BaseException, failed_attempt: int) -> Verdict:
        """After attempt ``failed_attempt`` (1 = the first delivery) failed with ``error``."""
        if self.classify(error) == "permanent" or failed_attempt > self.retries:
            return "dead-letter"
        return "retry"

    def delay_before(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based), jittered up only.

        Jitter only lengthens the wait, so a delay is never shorter than the policy says.
        """
        base = min(self.delays[retry - 1], self.max_delay)
        spread = base * self.jitter * (rng or random).random()
        return min(base + spread, self.max_delay) if base < self.max_delay else base
