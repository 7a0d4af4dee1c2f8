"""`choreo dev`: starts broker + registry, registers the schemas, prints the addresses, stops on SIGTERM."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from choreo.kafka.embedded import free_port, port_is_free, wait_for_kafka
from choreo.schemas.catalog import SchemaCatalog
from choreo.testing.processes import ChoreoProcess, wait_until

SCHEMAS_DIR = Path(__file__).resolve().parents[3] / "schemas"


def _log(process: ChoreoProcess) -> str:
    assert process.log_path is not None
    return process.log_path.read_text(errors="replace") if process.log_path.exists() else ""


@pytest.mark.timeout(180)
def test_dev_starts_the_stack_registers_schemas_and_stops_on_sigterm(tmp_path: Path) -> None:
    broker_port, registry_port = free_port(), free_port()
    process = ChoreoProcess(
        ["dev", "--broker-port", str(broker_port), "--registry-port", str(registry_port)],
        env={"CHOREO_SCHEMAS_DIR": str(SCHEMAS_DIR), "CHOREO_STATE_DIR": str(tmp_path / ".choreo")},
        log_path=tmp_path / "dev.log",
    ).start()
    try:
        def ready() -> bool:
            assert process.alive(), f"choreo dev exited early:\n{_log(process)}"
            return "choreo dev ready" in _log(process)

        wait_until(ready, timeout_s=120, message="choreo dev to print ready")
        output = _log(process)
        bootstrap, registry = f"127.0.0.1:{broker_port}", f"http://127.0.0.1:{registry_port}"
        assert f"export CHOREO_BOOTSTRAP_SERVERS={bootstrap}" in output
        assert f"export CHOREO_SCHEMA_REGISTRY_URL={registry}" in output
        subjects = {event.subject for event in SchemaCatalog.load(SCHEMAS_DIR)}
        for subject in subjects:
            assert f"new subject   {subject}" in output
        assert set(httpx.get(f"{registry}/subjects", timeout=5).json()) >= subjects
        wait_for_kafka(bootstrap, timeout_s=5)
        assert (tmp_path / ".choreo" / "dev" / "registry.log").exists()

        assert process.terminate(timeout_s=60) == 0, _log(process)
        output = _log(process)
        assert output.index("stopping registry") < output.index("stopping broker") < output.index("stopped")
        assert "Traceback" not in output
        wait_until(lambda: all(port_is_free("127.0.0.1", p) for p in (broker_port, registry_port)),
                   timeout_s=10, message="ports to be released")
    finally:
        process.terminate()


@pytest.mark.parametrize("taken", ["broker", "registry"])
def test_dev_refuses_a_taken_port_in_one_line(tmp_path: Path, taken: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        ports = {"broker": free_port(), "registry": free_port(), taken: busy}
        result = subprocess.run(
            [sys.executable, "-m", "choreo.cli.main", "dev",
             "--broker-port", str(ports["broker"]), "--registry-port", str(ports["registry"])],
            env={"PATH": "/usr/bin:/bin", "CHOREO_SCHEMAS_DIR": str(SCHEMAS_DIR),
                 "CHOREO_STATE_DIR": str(tmp_path / ".choreo"), "COLUMNS": "200"},
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    expected = f"error: cannot start the {taken}: port 127.0.0.1:{busy} is already in use"
    assert result.stderr.strip() == expected
