"""Failure handling: retry policies, retry/dead-letter routing and the headers they travel with."""

from choreo.retry.policy import RetryPolicy
from choreo.retry.router import RetryRouter

__all__ = ["RetryPolicy", "RetryRouter"]
