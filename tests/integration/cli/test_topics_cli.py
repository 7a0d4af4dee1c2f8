"""`choreo topics ensure` creates domain, retry and DLQ topics, and is idempotent."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from choreo.cli.main import app
from choreo.tasks import TASKS_TOPIC
from tests.support.echo import write_schemas


def test_topics_ensure_creates_everything_once(kafka_config, unique, tmp_path: Path) -> None:
    pings, pongs, group = unique("pings"), unique("pongs"), unique("echo")
    schemas = write_schemas(tmp_path / "schemas", pings, pongs)
    env = {"CHOREO_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"], "CHOREO_SCHEMAS_DIR": str(schemas),
           "CHOREO_TOPIC_PARTITIONS": "3", "ECHO_SERVICE_NAME": group}
    import importlib

    import tests.support.echo as echo_module

    runner = CliRunner()
    tasks_existed = TASKS_TOPIC in AdminClient(kafka_config).list_topics(timeout=10).topics  # shared by tests
    # The echo module reads its service name at import: reload it with this test's name.
    import os

    os.environ["ECHO_SERVICE_NAME"] = group
    try:
        importlib.reload(echo_module)
        first = runner.invoke(app, ["topics", "ensure", "tests.support.echo:service"], env=env)
        second = runner.invoke(app, ["topics", "ensure", "tests.support.echo:service"], env=env)
    finally:
        del os.environ["ECHO_SERVICE_NAME"]
        importlib.reload(echo_module)
    assert first.exit_code == 0, first.output
    expected = {pings, pongs, f"{group}.retry.1", f"{group}.retry.2", f"{group}.retry.3", f"{group}.dlq"}
    topics = AdminClient(kafka_config).list_topics(timeout=10).topics
    assert expected | {TASKS_TOPIC} <= set(topics)
    assert all(len(topics[name].partitions) == 3 for name in expected)
    assert ("6 created, 1 already there" if tasks_existed else "7 created, 0 already there") in first.output
    assert second.exit_code == 0 and "0 created, 7 already there" in second.output


def test_topics_ensure_unknown_service_is_one_clear_line(kafka_config, tmp_path: Path) -> None:
    schemas = write_schemas(tmp_path / "schemas", "a-topic", "b-topic")
    result = CliRunner().invoke(app, ["topics", "ensure", "nosuchservice"], env={
        "CHOREO_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"], "CHOREO_SCHEMAS_DIR": str(schemas)})
    assert result.exit_code == 1
    assert "no service 'nosuchservice'" in result.output
    assert "Traceback" not in result.output
