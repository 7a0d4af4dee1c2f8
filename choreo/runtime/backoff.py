"""The pause between attempts at work that failed for a transient reason (a store, the broker)."""

from __future__ import annotations

import time


class Backoff:
    """Exponential: ``first_s`` doubling up to ``max_s``. One instance per run of attempts."""

    def __init__(self, first_s: float = 0.2, max_s: float = 5.0) -> None:
        self.seconds = first_s
        self.max_s = max_s

    def sleep(self) -> None:
        time.sleep(self.seconds)
        self.seconds = min(self.seconds * 2, self.max_s)
