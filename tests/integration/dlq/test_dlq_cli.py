"""`choreo dlq list|show|replay|history` end to end through the console entry point's Typer app."""

from __future__ import annotations

import struct

import pytest
from typer.testing import CliRunner

from choreo import PermanentError
from choreo.cli.main import app
from choreo.kafka.embedded import free_port
from choreo.retry.dlq import DeadLetterFilter, read_dead_letters
from choreo.retry.replay import ReplayOptions, plan_replay, read_history
from tests.integration.dlq.helpers import Breakable, causations, wait_dead_letters, wait_outputs
from tests.integration.runtime.conftest import EchoEnv, running
from tests.support.echo import Ping
from tests.support.kafka import produce_raw, read_all


@pytest.fixture
def cli(echo_env: EchoEnv):
    runner = CliRunner()
    env = {"CHOREO_BOOTSTRAP_SERVERS": echo_env.settings.bootstrap_servers,
           "CHOREO_SCHEMA_REGISTRY_URL": echo_env.settings.schema_registry_url,
           "CHOREO_SCHEMAS_DIR": str(echo_env.settings.schemas_dir), "COLUMNS": "250"}

    def invoke(*args: str, **extra_env: str):
        return runner.invoke(app, ["dlq", *args], env={**env, **extra_env})

    return invoke


def test_list_show_filter_replay_and_history_from_the_command_line(echo_env: EchoEnv, unique, cli) -> None:
    switch = Breakable(all_broken=False, broken={"perm-0": PermanentError, "perm-1": PermanentError,
                                                 "perm-2": PermanentError, "flaky-0": ValueError,
                                                 "flaky-1": ValueError})
    service = switch.service(unique("cli"))
    name, settings = service.name, echo_env.settings
    with running(service, echo_env):
        with echo_env.publisher() as publisher:
            ids = {key: publisher.publish(Ping(key=key, seq=i)).event_id
                   for i, key in enumerate(["perm-0", "perm-1", "perm-2", "flaky-0", "flaky-1"])}
        produce_raw(echo_env.kafka_config, echo_env.in_topic, [
            (b"poison-key", b"\x00" + struct.pack(">I", 987654) + b"\x02",
             [("ce_id", b"poison-1"), ("ce_type", b"io.choreo.test.Ping"), ("ce_specversion", b"1.0")])])
        dead = wait_dead_letters(settings, name, 6)
        by_key = {d.key_text: d for d in dead}

        listed = cli("list", name)
        assert listed.exit_code == 0, listed.output
        for key in ("perm-0", "perm-1", "perm-2", "flaky-0", "flaky-1", "poison-key"):
            assert key in listed.output
        assert "PermanentError" in listed.output and "ValueError" in listed.output
        assert "retries-exhausted" in listed.output and "poison" in listed.output
        assert "6 of 6 dead letters" in listed.output
        only = cli("list", name, "--error-type", "ValueError")
        assert "2 of 6" in only.output and "perm-0" not in only.output

        perm = by_key["perm-1"]
        shown = cli("show", name, f"{perm.partition}:{perm.offset}")
        assert shown.exit_code == 0, shown.output
        assert "dlq-error-type" in shown.output and "PermanentError" in shown.output
        assert "traceback:" in shown.output and "Traceback (most recent call last)" in shown.output
        assert '"key": "perm-1"' in shown.output and '"seq": 1' in shown.output
        assert ids["perm-1"] in shown.output

        poison = by_key["poison-key"]
        shown = cli("show", name, str(poison.offset), "--partition", str(poison.partition))
        assert shown.exit_code == 0, shown.output
        assert "payload could not be decoded: unknown schema id 987654" in shown.output
        assert "poison" in shown.output and "00 00 0f 12 06 02" in shown.output

        down = cli("show", name, f"{perm.partition}:{perm.offset}",
                   CHOREO_SCHEMA_REGISTRY_URL=f"http://127.0.0.1:{free_port()}")
        assert down.exit_code == 0, down.output
        assert "dlq-error-type" in down.output and "payload could not be decoded: schema registry unreachable" \
            in down.output

        # Filters pick the right records (the same plan the replay command makes).
        everything = read_dead_letters(settings, name)

        def keys(**fields) -> list[str]:
            limit = fields.pop("limit", None)
            plan = plan_replay(everything, DeadLetterFilter.parse(**fields), ReplayOptions(limit=limit))
            return sorted(d.key_text for d in plan.selected)

        assert keys(key="flaky-1") == ["flaky-1"]
        assert keys(event_type="Ping") == keys(event_type="io.choreo.test.Ping") == \
            ["flaky-0", "flaky-1", "perm-0", "perm-1", "perm-2"]  # poison is skipped
        assert keys(event_type="Pong") == []
        assert keys(error_type="PermanentError") == ["perm-0", "perm-1", "perm-2"]
        assert keys(since="1h") == keys() and keys(until="1h") == [] and keys(since="2000-01-01T00:00Z",
                                                                              until="2999-01-01") == keys()
        assert len(keys(limit=2)) == 2

        retry_records = len(read_all(echo_env.settings, f"{name}.retry.1"))
        dry = cli("replay", name, "--error-type", "ValueError", "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert len(read_all(echo_env.settings, f"{name}.retry.1")) == retry_records  # nothing sent
        assert "would replay 2 dead letters" in dry.output and "flaky-0" in dry.output
        assert "perm-0" not in dry.output

        switch.broken.clear()  # fixed
        first = cli("replay", name, "--error-type", "PermanentError")
        assert first.exit_code == 0, first.output
        assert "replayed 3 dead letters" in first.output
        wait_outputs(echo_env, 3)

        rest = cli("replay", name)
        assert rest.exit_code == 0, rest.output
        assert "replayed 2 dead letters" in rest.output
        assert "3 already-replayed" in rest.output and "1 poison" in rest.output
        assert f"{poison.partition}:{poison.offset}" in rest.output and "--include-poison" in rest.output
        outputs = wait_outputs(echo_env, 5)
        assert sorted(causations(outputs)) == sorted(ids.values())

        history = cli("history", name)
        assert history.exit_code == 0, history.output
        assert "3 runs" in history.output and "dry run" in history.output
        assert "--error-type ValueError" in history.output and "--error-type PermanentError" in history.output
    runs = read_history(settings, name)
    assert [(r.dry_run, r.selected, r.replayed) for r in runs] == [(True, 2, 0), (False, 3, 3), (False, 2, 2)]
    assert runs[0].offsets == {}  # a dry run sends nothing


def test_bad_input_is_one_line_and_a_non_zero_exit(echo_env: EchoEnv, unique, cli) -> None:
    missing = unique("nobody")
    for args, message in [
        (("list", missing), f"no dead letters for {missing} (topic {missing}.dlq does not exist)"),
        (("replay", missing), f"no dead letters for {missing} (topic {missing}.dlq does not exist)"),
        (("show", missing, "3"), f"no dead letters for {missing}"),
        (("list", missing, "--since", "yesterday"), "--since 'yesterday' is neither an ISO-8601 time"),
        (("replay", missing, "--until", "soon"), "--until 'soon' is neither"),
        (("show", missing, "three"), "bad offset 'three'"),
        (("replay", missing, "--rate", "0"), "--rate must be a positive number"),
    ]:
        result = cli(*args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    history = cli("history", missing)
    assert history.exit_code == 0 and "0 runs" in history.output
