"""`choreo registry` as a process: restarts keep ids, signals stop it cleanly, bad starts fail in one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from choreo.kafka.admin import partition_count
from choreo.kafka.embedded import EmbeddedBroker, free_port
from choreo.testing.fixtures import start_registry
from choreo.testing.processes import ChoreoProcess

pytestmark = pytest.mark.timeout(90)


def schema(name: str, *fields: str) -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "choreo.test",
                       "fields": [{"name": f, "type": "string", "default": ""} for f in fields]})


def snapshot(url: str) -> dict[str, object]:
    """Everything a client could observe about the registry's contents."""
    deleted = {"deleted": "true"}
    subjects = httpx.get(f"{url}/subjects", params=deleted).json()
    versions = {s: httpx.get(f"{url}/subjects/{s}/versions", params=deleted).json() for s in subjects}
    detail = {f"{s}@{v}": httpx.get(f"{url}/subjects/{s}/versions/{v}", params=deleted).json()
              for s, vs in versions.items() for v in vs}
    live = {s: httpx.get(f"{url}/subjects/{s}/versions").json() for s in subjects}
    configs = {s: httpx.get(f"{url}/config/{s}").json() for s in subjects}
    return {"subjects": subjects, "versions": versions, "detail": detail, "live": live, "configs": configs,
            "global": httpx.get(f"{url}/config").json()}


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "choreo.cli.main", *args], capture_output=True, text=True,
                          timeout=30, env={**os.environ, **env})


def test_a_restarted_registry_serves_the_same_ids_and_versions(
        kafka_bootstrap: str, kafka_config: dict, tmp_path: Path, unique: Callable[[str], str]) -> None:
    topic = unique("_schemas")
    first, url = start_registry(kafka_bootstrap, tmp_path, topic=topic)
    try:
        ids = {}
        writes = [("a-choreo.test.A", schema("A", "x")), ("a-choreo.test.A", schema("A", "x", "y")),
                  ("b-choreo.test.A", schema("A", "x")), ("c-choreo.test.C", schema("C"))]
        for subject, text in writes:
            response = httpx.post(f"{url}/subjects/{subject}/versions", json={"schema": text})
            assert response.status_code == 200, response.text
            ids[(subject, text)] = response.json()["id"]
        assert httpx.put(f"{url}/config/b-choreo.test.A", json={"compatibility": "FULL"}).status_code == 200
        assert httpx.delete(f"{url}/subjects/a-choreo.test.A/versions/1").status_code == 200
        c_subject = f"{url}/subjects/c-choreo.test.C"
        assert httpx.delete(c_subject).status_code == 200
        assert httpx.delete(c_subject, params={"permanent": "true"}).status_code == 200
        before = snapshot(url)
    finally:
        assert first.terminate() == 0, first.log_tail()  # SIGTERM is a clean stop

    second, url = start_registry(kafka_bootstrap, tmp_path, topic=topic)
    try:
        assert snapshot(url) == before
        for (subject, text), schema_id in ids.items():
            if subject.startswith("c-"):
                continue  # permanently deleted
            again = httpx.post(f"{url}/subjects/{subject}/versions", json={"schema": text})
            assert again.json()["id"] == schema_id
        newest = httpx.post(f"{url}/subjects/d-choreo.test.D/versions", json={"schema": schema("D", "w")})
        assert newest.json()["id"] > max(ids.values())  # ids keep growing; none is handed out twice
    finally:
        assert second.terminate() == 0, second.log_tail()

    # The log is a compacted topic with one partition (ordering of ids and versions).
    assert partition_count(kafka_config, topic) == 1
    admin = AdminClient(kafka_config)
    [future] = admin.describe_configs([ConfigResource("topic", topic)]).values()
    entries = future.result()
    assert entries["cleanup.policy"].value == "compact"


def test_sigint_stops_it_cleanly(kafka_bootstrap: str, tmp_path: Path, unique: Callable[[str], str]) -> None:
    process, url = start_registry(kafka_bootstrap, tmp_path, topic=unique("_schemas"))
    assert process.process is not None
    process.process.send_signal(signal.SIGINT)
    assert process.process.wait(20) == 0
    assert "Traceback" not in process.log_tail(200)
    assert "registry stopped" in process.log_tail()


def test_a_taken_port_fails_with_one_clear_line(kafka_bootstrap: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("registry", "--port", str(port), env={"CHOREO_BOOTSTRAP_SERVERS": kafka_bootstrap})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and str(port) in lines[0] and "in use" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_an_unreachable_broker_fails_with_a_clear_error() -> None:
    dead = f"127.0.0.1:{free_port()}"
    result = run_cli("registry", "--port", str(free_port()), env={"CHOREO_BOOTSTRAP_SERVERS": dead})
    assert result.returncode != 0
    assert result.stderr.startswith("error: cannot reach the Kafka broker at " + dead), result.stderr
    assert "CHOREO_BOOTSTRAP_SERVERS" in result.stderr and "Traceback" not in result.stderr


def test_a_failed_write_is_50001_and_never_reuses_an_id(tmp_path: Path) -> None:
    """Broker stalls mid-write: 50001, reads keep working, the next write sees a write that landed late."""
    with EmbeddedBroker("127.0.0.1", free_port(), log_path=tmp_path / "tansu.log") as broker:
        port = free_port()
        env = {"CHOREO_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
               "CHOREO_KAFKA_MESSAGE_TIMEOUT_MS": "1500"}  # fail a stalled write fast
        process = ChoreoProcess(["registry", "--port", str(port)], env=env,
                                log_path=tmp_path / "registry.log").start()
        url = f"http://127.0.0.1:{port}"
        try:
            process.wait_http(f"{url}/subjects", timeout_s=30)
            assert httpx.post(f"{url}/subjects/a/versions", json={"schema": schema("A")}).json() == {"id": 1}
            broker.pause()
            try:
                failed = httpx.post(f"{url}/subjects/b/versions", json={"schema": schema("B")}, timeout=30)
                assert failed.status_code == 500 and failed.json()["error_code"] == 50001, failed.text
                assert httpx.get(f"{url}/subjects", timeout=5).json() == ["a"]  # reads never wait for Kafka
            finally:
                broker.resume()
            created = httpx.post(f"{url}/subjects/c/versions", json={"schema": schema("C")}, timeout=30)
            assert created.status_code == 200, created.text
            # Whether or not the stalled write landed, every id names exactly one schema.
            for subject in httpx.get(f"{url}/subjects").json():
                entry = httpx.get(f"{url}/subjects/{subject}/versions/1").json()
                by_id = httpx.get(f"{url}/schemas/ids/{entry['id']}").json()
                assert json.loads(by_id["schema"])["name"] == subject.upper()
        finally:
            assert process.terminate() == 0, process.log_tail()
