"""`choreo dev`'s supervisor with real child processes: prefixed output and logs, restarts, stopping."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from rich.console import Console

from choreo.cli.supervisor import Exit, ProcessSpec, Supervisor
from choreo.testing.processes import pid_alive, wait_until


def supervisor(tmp_path: Path) -> tuple[Supervisor, io.StringIO]:
    out = io.StringIO()
    return Supervisor(Console(file=out, width=200), tmp_path, base_env={"PATH": "/usr/bin:/bin"}), out


def python(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


def test_output_is_prefixed_on_the_console_and_kept_in_the_log(tmp_path: Path) -> None:
    sup, out = supervisor(tmp_path)
    child = sup.start(ProcessSpec("worker", python("import sys; print('hello [bold]x'); print('oops', file=sys.stderr)"
                                                   "; import time; time.sleep(30)")))
    wait_until(lambda: "oops" in out.getvalue(), timeout_s=10, message="output")
    assert "worker      | hello [bold]x\n" in out.getvalue()  # no markup interpreted
    assert "worker      | oops\n" in out.getvalue()
    log = (tmp_path / "worker.log").read_text()
    assert log.startswith("--- started ") and log.endswith("hello [bold]x\noops\n")
    sup.stop(["worker"])
    assert not child.alive()


def test_an_exited_child_is_restarted_with_backoff_and_reported(tmp_path: Path) -> None:
    sup, out = supervisor(tmp_path)
    spawned: list[int] = []
    sup.on_spawn = lambda child: spawned.append(child.pid or 0)
    sup.start(ProcessSpec("crashy", python("print('up'); raise SystemExit(3)")))
    exits: list[Exit] = []

    def restarted_twice() -> bool:
        exits.extend(sup.poll())
        return len(spawned) >= 3

    wait_until(restarted_twice, timeout_s=15, message="two restarts")
    assert [(e.name, e.code, e.restart, e.delay_s) for e in exits[:2]] == [("crashy", 3, 1, 0.5), ("crashy", 3, 2, 1.0)]
    assert len(set(spawned)) == 3
    assert (tmp_path / "crashy.log").read_text().count("--- started ") >= 3
    sup.stop(["crashy"])
    assert sup.poll() == []  # a stopped child is not restarted


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    sup, out = supervisor(tmp_path)
    child = sup.start(ProcessSpec("stubborn", python(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready'); time.sleep(60)")))
    wait_until(lambda: "ready" in out.getvalue(), timeout_s=10, message="ready")
    pid = child.pid
    assert pid is not None
    sup.stop(["stubborn"], timeout_s=0.5)
    assert not pid_alive(pid)
    assert "stubborn did not stop within 0.5s, killing it" in out.getvalue()
