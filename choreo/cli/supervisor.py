"""A small process supervisor for `choreo dev`: run children, prefix their output, restart crashes.

Why our own and not honcho: honcho (like foreman) ends every process as soon as one exits, which is the
opposite of what dev needs — a crashed service is restarted with backoff while the others keep running,
and shutdown goes in a fixed order (services, then the registry, then the broker). What remains is
~200 lines of Popen, one output thread per child and a poll loop, so a dependency would not pay.

Contract:

- Each child runs in its own session (``start_new_session``), so a terminal's Ctrl-C reaches only dev,
  which then stops the children in order; a child never sees the signal twice.
- stdout and stderr are merged; every line goes, unchanged, to ``<log_dir>/<name>.log`` (appended, one
  ``--- started`` marker per start) and, prefixed and coloured, to the console.
- :meth:`Supervisor.poll` (called from one thread, dev's main loop) reaps exits and restarts children after
  a backoff of 0.5 s doubling to 15 s; a child that stayed up 30 s starts again from 0.5 s.
- Thread-safety: only the output threads run concurrently; they touch their own log file and print
  under one lock. Everything else belongs to the thread calling poll()/stop().
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.text import Text

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta",
           "bright_green", "bright_yellow")
FIRST_DELAY_S, MAX_DELAY_S, HEALTHY_AFTER_S = 0.5, 15.0, 30.0


def restart_delay(restarts: int) -> float:
    """Seconds to wait before restart number ``restarts`` (1, 2, …): 0.5, 1, 2, … capped at 15."""
    return min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** max(0, restarts - 1))


@dataclass(frozen=True)
class ProcessSpec:
    """One child: its name (log file, prefix), argv and extra environment."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Exit:
    """A child that exited on its own, as poll() reports it."""

    name: str
    code: int
    restart: int | None  # the restart number scheduled, or None if not restarted
    delay_s: float = 0.0


class Child:
    """A supervised child: the current process, restarts so far, and its output thread."""

    def __init__(self, spec: ProcessSpec, log_path: Path, colour: str) -> None:
        self.spec, self.log_path, self.colour = spec, log_path, colour
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.restart_at: float | None = None  # monotonic time of a pending restart
        self.stopping = False
        self.pump: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Supervisor:
    """Starts, restarts and stops :class:`ProcessSpec` children (see the module docstring)."""

    def __init__(self, console: Console, log_dir: Path, base_env: dict[str, str], prefix_width: int = 12,
                 on_spawn: Callable[[Child], None] | None = None) -> None:
        self.console, self.log_dir, self.base_env = console, log_dir, base_env
        self.prefix_width = prefix_width
        self.on_spawn = on_spawn  # called after every start and restart (dev prints it, updates pids.json)
        self.children: dict[str, Child] = {}
        self._print_lock = threading.Lock()

    def start(self, spec: ProcessSpec) -> Child:
        """Start ``spec`` now (its first start; a failure to exec raises OSError)."""
        colour = COLOURS[len(self.children) % len(COLOURS)]
        child = Child(spec, self.log_dir / f"{spec.name}.log", colour)
        self.children[spec.name] = child
        self._spawn(child)
        return child

    def pids(self) -> dict[str, int]:
        return {name: pid for name, child in self.children.items() if (pid := child.pid) is not None}

    def poll(self) -> list[Exit]:
        """Reap children that exited, schedule their restart, and start those whose backoff is over."""
        now = time.monotonic()
        exits: list[Exit] = []
        for child in self.children.values():
            if child.stopping:
                continue
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    self._spawn(child)
                continue
            code = child.process.poll() if child.process is not None else None
            if code is None:
                continue
            if now - child.started_at >= HEALTHY_AFTER_S:
                child.restarts = 0  # it ran fine for a while: this crash starts a new backoff series
            child.restarts += 1
            delay = restart_delay(child.restarts)
            child.restart_at = now + delay
            exits.append(Exit(child.spec.name, code, child.restarts, delay))
        return exits

    def stop(self, names: Sequence[str], timeout_s: float = 20.0) -> None:
        """SIGTERM every named child at once, wait up to ``timeout_s``, then SIGKILL what is left."""
        group = [self.children[name] for name in names if name in self.children]
        for child in group:
            child.stopping = True
            child.restart_at = None
            if child.alive():
                assert child.process is not None
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in group:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.spec.name} did not stop within {timeout_s:g}s, killing it", "red")
                child.process.kill()
                child.process.wait()
            if child.pump is not None:
                child.pump.join(timeout=2.0)

    def say(self, message: str, style: str = "bold") -> None:
        """A line of dev's own, printed under the same lock as the children's output."""
        with self._print_lock:
            self.console.print(Text(message, style=style), soft_wrap=True)

    def _spawn(self, child: Child) -> None:
        log = open(child.log_path, "ab")  # noqa: SIM115 - closed by the pump when the output ends
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log.write(f"--- started {stamp}: {' '.join(child.spec.argv)}\n".encode())
        log.flush()
        try:
            child.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                child.spec.argv, env={**self.base_env, **child.spec.env}, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        child.started_at = time.monotonic()
        assert child.process.stdout is not None
        child.pump = threading.Thread(target=self._pump, args=(child, child.process.stdout, log),
                                      name=f"dev-output-{child.spec.name}", daemon=True)
        child.pump.start()
        if self.on_spawn is not None:
            self.on_spawn(child)

    def _pump(self, child: Child, stream: IO[bytes], log: IO[bytes]) -> None:
        """Copy the child's output to its log file and, prefixed, to the console until EOF."""
        prefix = Text(f"{child.spec.name:<{self.prefix_width}}| ", style=child.colour)
        with stream, log:
            for raw in iter(stream.readline, b""):
                log.write(raw)
                log.flush()  # so `tail -f` and tests see every line at once
                line = raw.decode(errors="replace").rstrip("\r\n")
                with self._print_lock:
                    self.console.print(prefix + Text(line), soft_wrap=True)
