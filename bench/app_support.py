"""What the frameworks' bench apps share (bench/quix_app.py, faststream_app.py, faust_app.py).

Those apps run in their frameworks' own venvs, which have neither choreo nor its test package, so this
module uses the standard library only; the apps import it as ``app_support`` (their own folder is first on
``sys.path`` when run as ``python bench/<app>.py``).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path
from typing import Any

WARMUP = 1000  # like the other runners' first batch: not timed
ECHO = Path(__file__).resolve().parent.parent / "tests" / "support" / "echo.py"


def schemas() -> dict[str, Any]:
    """PING_SCHEMA and PONG_SCHEMA from tests/support/echo.py, evaluated as literals (no import)."""
    found: dict[str, Any] = {}
    for node in ast.parse(ECHO.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("PING_SCHEMA", "PONG_SCHEMA"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


def arguments(description: str) -> argparse.Namespace:
    """``--bootstrap --registry --in-topic --out-topic --count N``, N above the warm-up."""
    parser = argparse.ArgumentParser(description=description)
    for option in ("--bootstrap", "--registry", "--in-topic", "--out-topic"):
        parser.add_argument(option, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    if args.count <= WARMUP:
        parser.error(f"--count must exceed the {WARMUP} warm-up messages")
    return args


class Window:
    """The timed window: opens when the WARMUP-th message is handled, closes at the ``count``-th.

    Wall-clock and process CPU time (every thread) are both taken at the same two moments.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.handled = 0
        self._start = self._end = self._cpu_start = self._cpu_end = 0.0

    def tally(self) -> bool:
        """Count one handled message; True when it was the last one (the app should stop)."""
        self.handled += 1
        if self.handled == WARMUP:
            self._start, self._cpu_start = time.perf_counter(), time.process_time()
        elif self.handled == self.count:
            self._end, self._cpu_end = time.perf_counter(), time.process_time()
            return True
        return False

    def report(self) -> None:
        """The one JSON line the bench reads from stdout (bench/runner.run_in_process); exits with an error
        instead if the app stopped before its last message (a signal, a crash the framework swallowed)."""
        if self.handled < self.count:
            sys.exit(f"stopped after {self.handled} of {self.count} messages: no figures")
        print(json.dumps({"events": self.count - WARMUP, "seconds": self._end - self._start,
                          "cpu_seconds": self._cpu_end - self._cpu_start}), flush=True)
