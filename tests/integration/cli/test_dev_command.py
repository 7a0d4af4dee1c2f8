"""`choreo dev` as a real process: the stack and every existing service start, a killed service is restarted,
Ctrl-C stops everything in order and leaves no process behind; taken ports are one error line."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from choreo.cli.devplan import REFERENCE_PROCESSES, is_available
from choreo.kafka.embedded import free_port, port_is_free, wait_for_kafka
from choreo.schemas.catalog import SchemaCatalog
from choreo.testing.processes import ChoreoProcess, pid_alive, wait_until

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS_DIR = ROOT / "schemas"
EXISTING = [p.name for p in REFERENCE_PROCESSES if is_available(p)]
SERVICES = [p.name for p in REFERENCE_PROCESSES if p.kind == "service" and p.name in EXISTING]


def _log(process: ChoreoProcess) -> str:
    assert process.log_path is not None
    return process.log_path.read_text(errors="replace") if process.log_path.exists() else ""


def _pids(state_dir: Path) -> dict[str, int]:
    path = state_dir / "dev" / "pids.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_dev(tmp_path: Path) -> tuple[ChoreoProcess, dict[str, int]]:
    """`choreo dev` on free ports (never the SPEC defaults: a developer's own dev may be running)."""
    ports = {"broker": free_port(), "registry": free_port(), "order": free_port(), "progress": free_port()}
    process = ChoreoProcess(
        ["dev", "--broker-port", str(ports["broker"]), "--registry-port", str(ports["registry"]),
         "--order-api-port", str(ports["order"]), "--progress-port", str(ports["progress"]),
         "--metrics-base-port", "0"],
        env={"CHOREO_SCHEMAS_DIR": str(SCHEMAS_DIR), "CHOREO_STATE_DIR": str(tmp_path / ".choreo"),
             "CHOREO_SERVICE_TOKEN": ""},
        log_path=tmp_path / "dev.log", cwd=ROOT,
    ).start()

    def ready() -> bool:
        assert process.alive(), f"choreo dev exited early:\n{_log(process)}"
        return "choreo dev ready" in _log(process)

    try:
        wait_until(ready, timeout_s=60, interval_s=0.2, message="choreo dev to print ready")
    except BaseException:
        process.terminate()
        raise
    return process, ports


@pytest.mark.timeout(120)
def test_dev_runs_every_service_restarts_a_killed_one_and_stops_cleanly(tmp_path: Path) -> None:
    process, ports = start_dev(tmp_path)
    state = tmp_path / ".choreo"
    try:
        output = _log(process)
        bootstrap, registry = f"127.0.0.1:{ports['broker']}", f"http://127.0.0.1:{ports['registry']}"
        assert f"export CHOREO_BOOTSTRAP_SERVERS={bootstrap}" in output
        assert f"export CHOREO_SCHEMA_REGISTRY_URL={registry}" in output
        token = re.search(r"export CHOREO_SERVICE_TOKEN=(\S+)", output)
        assert token and len(token.group(1)) >= 40, "a generated token of 32 random bytes"
        assert (state / "dev" / "env").read_text().count("export ") == 5
        subjects = {event.subject for event in SchemaCatalog.load(SCHEMAS_DIR)}
        assert set(httpx.get(f"{registry}/subjects", timeout=5).json()) >= subjects
        wait_for_kafka(bootstrap, timeout_s=5)

        # Every process that exists in this checkout (services, and the progress service once it is
        # registered) runs and answers on the metrics port dev printed.
        metrics = dict(re.findall(r"metrics\s+(\S+)\s+(http://\S+)/metrics", output))
        assert sorted(metrics) == sorted(EXISTING)
        for name, base in metrics.items():
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200, name
            assert httpx.get(f"{base}/metrics", timeout=5).status_code == 200, name
        pids = _pids(state)
        assert set(pids) >= {"dev", "broker", "registry", *EXISTING}
        assert pids["dev"] == process.pid

        # SIGKILL one service: dev says so and starts it again.
        victim = "payment"
        old_pid = pids[victim]
        os.kill(old_pid, signal.SIGKILL)
        wait_until(lambda: f"{victim} exited with code -9, restarting (restart 1)" in _log(process),
                   timeout_s=10, message="dev to report the crash")
        wait_until(lambda: _pids(state).get(victim, old_pid) != old_pid, timeout_s=10, message="a new pid")
        new_pid = _pids(state)[victim]
        assert pid_alive(new_pid)
        assert f"{victim} restarted (restart 1), pid {new_pid}" in _log(process)
        wait_until(lambda: _healthy(f"{metrics[victim]}/healthz"), timeout_s=20,
                   message="the restarted service to answer")
        children = {**_pids(state)}

        # Ctrl-C: services, then registry, then broker; exit 0; nothing left behind.
        assert process.process is not None
        process.process.send_signal(signal.SIGINT)
        assert process.process.wait(60) == 0, _log(process)
        output = _log(process)
        assert "Traceback" not in output
        assert output.index("\nstopping " + ", ".join(EXISTING) + "\n") < output.index("\nstopping registry\n") \
            < output.index("\nstopping broker\n")
        assert output.endswith("\nstopping broker\nstopped\n")
        left = {name: pid for name, pid in children.items() if pid_alive(pid)}
        assert not left, f"still running after dev stopped: {left}"
        assert not (state / "dev" / "pids.json").exists()
        for name in ("registry", *EXISTING):
            assert (state / "dev" / f"{name}.log").exists()
        assert all(port_is_free("127.0.0.1", p) for p in (ports["broker"], ports["registry"]))
    finally:
        process.terminate()


TAKEN = ["broker", "registry"] + (["order API"] if "order" in EXISTING else [])


@pytest.mark.parametrize("taken", TAKEN)
def test_dev_refuses_a_taken_port_in_one_line(tmp_path: Path, taken: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        ports = {"broker": free_port(), "registry": free_port(), "order API": free_port(), taken: busy}
        result = subprocess.run(
            [sys.executable, "-m", "choreo.cli.main", "dev",
             "--broker-port", str(ports["broker"]), "--registry-port", str(ports["registry"]),
             "--order-api-port", str(ports["order API"]), "--progress-port", str(free_port())],
            env={"PATH": "/usr/bin:/bin", "CHOREO_SCHEMAS_DIR": str(SCHEMAS_DIR),
                 "CHOREO_STATE_DIR": str(tmp_path / ".choreo"), "COLUMNS": "200"},
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    expected = f"error: cannot start the {taken}: port 127.0.0.1:{busy} is already in use"
    assert result.stderr.strip() == expected


def test_dev_refuses_two_parts_on_one_port(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "choreo.cli.main", "dev", "--broker-port", str(port), "--registry-port", str(port)],
        env={"PATH": "/usr/bin:/bin", "CHOREO_SCHEMAS_DIR": str(SCHEMAS_DIR),
             "CHOREO_STATE_DIR": str(tmp_path / ".choreo"), "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: the broker and the registry cannot both use port {port}"


@pytest.mark.timeout(120)
def test_the_broker_dying_ends_dev_with_one_error_and_no_process_left(tmp_path: Path) -> None:
    process, _ = start_dev(tmp_path)
    try:
        children = _pids(tmp_path / ".choreo")
        os.kill(children["broker"], signal.SIGKILL)
        assert process.process is not None
        assert process.process.wait(60) == 1
        output = _log(process)
        assert "the broker exited; its in-memory data is gone, stopping dev" in output
        assert "Traceback" not in output
        left = {name: pid for name, pid in children.items() if pid_alive(pid)}
        assert not left, f"still running after dev stopped: {left}"
    finally:
        process.terminate()
