"""Real `choreo run` processes: SIGKILL mid-stream, a group losing a member, graceful SIGTERM.

Invariant checked everywhere: every input produces exactly one distinct output id (deterministic ids),
so downstream never sees one event twice under different ids, and nothing is lost.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Message

from choreo.config import Settings
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.kafka.embedded import free_port
from choreo.publisher import Publisher
from choreo.testing.processes import ChoreoProcess, wait_until
from tests.support.echo import Ping, write_schemas
from tests.support.kafka import headers_of, read_topic

REPO = Path(__file__).resolve().parents[2]
TOTAL = 3000


class EchoCluster:
    """Topics, schemas and settings for one test; starts `choreo run tests.support.echo:service` processes."""

    def __init__(self, kafka_config: dict[str, Any], registry_url: str, unique, tmp_path: Path) -> None:
        self.kafka_config = kafka_config
        self.tmp_path = tmp_path
        self.in_topic, self.out_topic = unique("pings"), unique("pongs")
        self.group = unique("echo")
        self.schemas = write_schemas(tmp_path / "schemas", self.in_topic, self.out_topic)
        ensure_topics(kafka_config, [TopicSpec(self.in_topic, 8), TopicSpec(self.out_topic, 8)])
        self.env = {
            "CHOREO_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"],
            "CHOREO_SCHEMA_REGISTRY_URL": registry_url,
            "CHOREO_SCHEMAS_DIR": str(self.schemas),
            "CHOREO_STATE_DIR": str(tmp_path / "state"),
            "ECHO_SERVICE_NAME": self.group,
            "ECHO_DELAY_MS": "2",
            # A wide commit window makes a kill land between "marked processed" and "offset committed".
            "CHOREO_KAFKA_AUTO_COMMIT_INTERVAL_MS": "5000",
        }
        self.settings = Settings(bootstrap_servers=kafka_config["bootstrap.servers"],
                                 schema_registry_url=registry_url, schemas_dir=self.schemas)
        self.processes: list[ChoreoProcess] = []

    def start(self, name: str, target: str = "tests.support.echo:service",
              **env: str) -> tuple[ChoreoProcess, str]:
        port = free_port()
        process = ChoreoProcess(["run", target, "--batch-size", "100"],
                                env={**self.env, "CHOREO_HTTP_PORT": str(port), **env},
                                log_path=self.tmp_path / f"{name}.log", cwd=REPO).start()
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        process.wait_http(f"{url}/healthz", timeout_s=60)
        return process, url

    def publish(self, count: int, keys: int = 100) -> set[str]:
        with Publisher.from_settings(self.settings, source="test") as publisher:
            return {publisher.publish(Ping(key=f"k{i % keys}", seq=i)).event_id for i in range(count)}

    def outputs(self, at_least: int, timeout_s: float = 120) -> list[Message]:
        return read_topic(self.kafka_config, self.out_topic, timeout_s=timeout_s,
                          until=lambda ms: len({headers_of(m)["causation-id"] for m in ms}) >= at_least)

    def output_count(self) -> int:
        """Distinct inputs answered so far (cheap poll of the output topic)."""
        try:
            return len({headers_of(m)["causation-id"] for m in self.outputs(1, timeout_s=5)})
        except TimeoutError:
            return 0

    def stop_all(self) -> None:
        for process in self.processes:
            process.kill()


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.M))


def assert_exactly_one_output_per_input(outputs: list[Message], inputs: set[str]) -> None:
    ids_by_cause: dict[str, set[str]] = defaultdict(set)
    for message in outputs:
        headers = headers_of(message)
        ids_by_cause[headers["causation-id"]].add(headers["ce_id"])
    assert set(ids_by_cause) == inputs, "an input was lost (or an unknown output appeared)"
    assert all(len(ids) == 1 for ids in ids_by_cause.values()), "one input answered under two ids"


@pytest.fixture
def cluster(kafka_config, schema_registry_url, unique, tmp_path):
    echo = EchoCluster(kafka_config, schema_registry_url, unique, tmp_path)
    yield echo
    echo.stop_all()


@pytest.mark.timeout(240)
def test_sigkill_mid_stream_then_restart_loses_nothing(cluster: EchoCluster) -> None:
    inputs = cluster.publish(TOTAL)
    first, _ = cluster.start("first")
    wait_until(lambda: cluster.output_count() >= TOTAL // 4, 90, interval_s=0.5, message="a quarter handled")
    first.kill()
    assert cluster.output_count() < TOTAL, "the kill came too late to be mid-stream"
    _, url = cluster.start("second")
    outputs = cluster.outputs(TOTAL, timeout_s=150)
    assert_exactly_one_output_per_input(outputs, inputs)
    # Re-delivered inputs that the killed process had already handled were skipped by the store.
    wait_until(lambda: metric(url, "choreo_duplicates_skipped_total") > 0, 30, message="duplicates skipped")


@pytest.mark.timeout(240)
def test_group_member_killed_the_other_takes_over(cluster: EchoCluster) -> None:
    first, _ = cluster.start("a")
    second, url_b = cluster.start("b")
    wait_until(lambda: httpx.get(f"{url_b}/readyz").status_code == 200, 60, message="b assigned")
    inputs = cluster.publish(TOTAL)
    wait_until(lambda: cluster.output_count() >= TOTAL // 5, 90, interval_s=0.5, message="a fifth handled")
    first.kill()
    outputs = cluster.outputs(TOTAL, timeout_s=180)
    assert_exactly_one_output_per_input(outputs, inputs)
    assert second.alive()


@pytest.mark.timeout(180)
def test_sigterm_finishes_in_flight_commits_and_leaves(cluster: EchoCluster) -> None:
    inputs = cluster.publish(TOTAL)
    first, _ = cluster.start("first")
    wait_until(lambda: cluster.output_count() >= TOTAL // 4, 90, interval_s=0.5, message="a quarter handled")
    import time

    started = time.monotonic()
    assert first.terminate(timeout_s=30) == 0
    assert time.monotonic() - started < 20, "shutdown took too long"
    _, url = cluster.start("second")
    outputs = cluster.outputs(TOTAL, timeout_s=150)
    assert_exactly_one_output_per_input(outputs, inputs)
    # Offsets were committed on shutdown: the restarted member re-handles nothing.
    assert metric(url, "choreo_duplicates_skipped_total") == 0
    assert len(outputs) == TOTAL


@pytest.mark.timeout(240)
def test_sigkill_during_retries_loses_nothing_and_applies_nothing_twice(cluster: EchoCluster) -> None:
    """Every event fails once and waits 1 s in the retry topic; the process is killed meanwhile."""
    inputs = cluster.publish(TOTAL)
    first, _ = cluster.start("first", "tests.support.echo:tx_service", ECHO_FAIL_FIRST_ATTEMPT="1")
    retry_topic = f"{cluster.group}.retry.1"
    read_topic(cluster.kafka_config, retry_topic, until=lambda ms: len(ms) >= TOTAL // 3, timeout_s=90)
    wait_until(lambda: cluster.output_count() >= TOTAL // 10, 90, interval_s=0.5, message="retries succeeding")
    first.kill()
    assert cluster.output_count() < TOTAL, "the kill came too late to be mid-stream"
    cluster.start("second", "tests.support.echo:tx_service", ECHO_FAIL_FIRST_ATTEMPT="1")
    outputs = cluster.outputs(TOTAL, timeout_s=150)
    assert_exactly_one_output_per_input(outputs, inputs)
    import sqlite3

    database = cluster.tmp_path / "state" / f"{cluster.group}.sqlite3"
    applied = sqlite3.connect(database).execute(
        "SELECT event_id, COUNT(*) FROM applied GROUP BY event_id").fetchall()
    assert {event_id for event_id, _ in applied} == inputs
    assert all(count == 1 for _, count in applied), "an effect was applied twice"
