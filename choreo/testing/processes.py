"""Run `choreo` commands as real child processes (for tests, benchmarks and `choreo dev`).

Fault tests need real processes: SIGKILL and SIGSTOP only mean something for a process of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from choreo.errors import InfrastructureError


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.05,
               message: str = "condition") -> None:
    """Poll ``condition`` until true; raise TimeoutError naming ``message`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.1f}s waiting for {message}")


def choreo_command(args: Sequence[str]) -> list[str]:
    """The argv that runs ``choreo <args>`` with this interpreter (no console script needed on PATH)."""
    return [sys.executable, "-m", "choreo.cli.main", *args]


def pid_alive(pid: int) -> bool:
    """True while a process ``pid`` exists and is not a zombie (a dead child not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # /proc/<pid>/stat: "pid (comm) state ..."; comm may hold spaces, so split after the last ')'.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): kill(0) succeeding is all we know
    return state != "Z"


class ChoreoProcess:
    """``python -m choreo.cli.main <args>`` in a child process with its own environment and log file."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None,
                 log_path: Path | None = None, cwd: Path | None = None) -> None:
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ChoreoProcess:
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            choreo_command(self.args),
            env=self.env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.cwd,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "process not started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_http(self, url: str, timeout_s: float = 30.0) -> None:
        """Wait until ``GET url`` answers below 500, failing fast if the process dies."""
        def ready() -> bool:
            if not self.alive():
                raise InfrastructureError(f"{self.args[0]} exited with {self.returncode()}: {self.log_tail()}")
            try:
                return httpx.get(url, timeout=1.0).status_code < 500
            except httpx.HTTPError:
                return False
        wait_until(ready, timeout_s, message=f"{url} to answer")

    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (crash simulation)."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def terminate(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it overstays ``timeout_s``. Returns the exit code."""
        if not self.alive():
            return self.returncode()
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
