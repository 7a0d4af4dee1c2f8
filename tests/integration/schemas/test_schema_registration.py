"""`choreo schemas register|check|list` against a real `choreo registry` process.

Each test copies schemas/ into a tmp dir with topic folders renamed per test (``orders-1a2b3c4d``), so its
subjects never collide with another test's in the session registry.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from typer.testing import CliRunner

from choreo.cli.main import app
from choreo.kafka.embedded import free_port
from choreo.schemas.catalog import SchemaCatalog

SCHEMAS_DIR = Path(__file__).resolve().parents[3] / "schemas"
REFERENCE = SchemaCatalog.load(SCHEMAS_DIR)
runner = CliRunner()


@pytest.fixture
def schemas_dir(tmp_path: Path, unique: Callable[[str], str]) -> Path:
    """A copy of schemas/ whose topic folders carry this test's suffix."""
    root = tmp_path / "schemas"
    for topic_dir in sorted(p for p in SCHEMAS_DIR.iterdir() if p.is_dir()):
        shutil.copytree(topic_dir, root / unique(topic_dir.name))
    return root


def choreo(args: list[str], schemas_dir: Path, registry_url: str):
    return runner.invoke(app, args, env={
        "CHOREO_SCHEMAS_DIR": str(schemas_dir),
        "CHOREO_SCHEMA_REGISTRY_URL": registry_url,
        "COLUMNS": "250",  # keep Rich from folding long subject names in the list table
    })


def subject_lines(output: str) -> dict[str, str]:
    """``{subject: its line}`` for every line that names a subject of the copied catalog."""
    lines: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("error:"):
            continue
        match = re.search(r"\s(\S+-io\.choreo\.shop\.\w+)", line)
        if match:
            assert match.group(1) not in lines, f"two lines for {match.group(1)}:\n{output}"
            lines[match.group(1)] = line
    return lines


def edit(schemas_dir: Path, name: str, change: Callable[[dict], None]) -> str:
    """Apply ``change`` to the .avsc of record ``name``; return its subject."""
    event = SchemaCatalog.load(schemas_dir).get(name)
    raw = json.loads(event.path.read_text())
    change(raw)
    event.path.write_text(json.dumps(raw, indent=2))
    return event.subject


def test_register_prints_one_line_per_subject_then_unchanged(schemas_dir, schema_registry_url) -> None:
    subjects = {event.subject for event in SchemaCatalog.load(schemas_dir)}

    first = choreo(["schemas", "register"], schemas_dir, schema_registry_url)
    assert first.exit_code == 0, first.output
    lines = subject_lines(first.output)
    assert set(lines) == subjects and len(first.output.strip().splitlines()) == len(subjects)
    ids = {}
    for subject, line in lines.items():
        match = re.fullmatch(rf"new subject\s+{re.escape(subject)}\s+id (\d+) v1", line.strip())
        assert match, line
        ids[subject] = match.group(1)

    second = choreo(["schemas", "register"], schemas_dir, schema_registry_url)
    assert second.exit_code == 0, second.output
    for subject, line in subject_lines(second.output).items():
        assert re.fullmatch(rf"unchanged\s+{re.escape(subject)}\s+id {ids[subject]} v1", line.strip()), line

    check = choreo(["schemas", "check"], schemas_dir, schema_registry_url)
    assert check.exit_code == 0, check.output
    assert all(line.startswith("unchanged") for line in subject_lines(check.output).values())


def test_check_reports_changes_without_writing_and_register_refuses_incompatible(
    schemas_dir, schema_registry_url
) -> None:
    assert choreo(["schemas", "register"], schemas_dir, schema_registry_url).exit_code == 0
    client = SchemaRegistryClient({"url": schema_registry_url})

    def add_required_coupon(raw: dict) -> None:
        raw["fields"].append({"name": "coupon_code", "type": "string", "doc": "no default: breaks old data"})

    def add_optional_note(raw: dict) -> None:
        raw["fields"].append({"name": "note", "type": ["null", "string"], "default": None, "doc": "optional"})

    placed = edit(schemas_dir, "OrderPlaced", add_required_coupon)
    cancelled = edit(schemas_dir, "OrderCancelled", add_optional_note)

    check = choreo(["schemas", "check"], schemas_dir, schema_registry_url)
    assert check.exit_code == 1, check.output
    assert "Traceback" not in check.output
    lines = subject_lines(check.output)
    assert lines[placed].startswith("incompatible") and "coupon_code" in lines[placed], lines[placed]
    assert lines[cancelled].startswith("new version") and "(would register)" in lines[cancelled]
    # Who a change affects, from the services' declarations (the map of `choreo graph`), under its line.
    after = check.output.split(lines[cancelled], 1)[1].splitlines()[1]
    assert after.strip() == "consumed by: inventory, notification, payment, shipping; produced by: order"
    assert "error:" in check.output and placed in check.output.splitlines()[-1]
    assert client.get_versions(cancelled) == [1], "check must not register anything"
    assert client.get_versions(placed) == [1]

    register = choreo(["schemas", "register"], schemas_dir, schema_registry_url)
    assert register.exit_code == 1, register.output
    lines = subject_lines(register.output)
    assert lines[placed].startswith("incompatible") and "coupon_code" in lines[placed]
    assert re.search(r"new version\s+\S+\s+id \d+ v2$", lines[cancelled].strip()), lines[cancelled]
    assert client.get_versions(cancelled) == [1, 2]
    assert client.get_versions(placed) == [1], "an incompatible schema is never registered"
    unchanged = [s for s in lines if s not in (placed, cancelled)]
    assert unchanged and all(lines[s].startswith("unchanged") for s in unchanged)


def test_list_shows_latest_versions_and_local_state(schemas_dir, schema_registry_url) -> None:
    catalog = SchemaCatalog.load(schemas_dir)
    before = choreo(["schemas", "list"], schemas_dir, schema_registry_url)
    assert before.exit_code == 0, before.output
    rows = subject_lines(before.output)
    assert {e.subject for e in catalog} <= set(rows)
    assert all("not registered" in rows[e.subject] for e in catalog)

    assert choreo(["schemas", "register"], schemas_dir, schema_registry_url).exit_code == 0
    changed = edit(schemas_dir, "ShipmentFailed",
                   lambda raw: raw["fields"].append({"name": "carrier", "type": ["null", "string"],
                                                      "default": None, "doc": "optional"}))
    after = choreo(["schemas", "list"], schemas_dir, schema_registry_url)
    assert after.exit_code == 0, after.output
    rows = subject_lines(after.output)
    for event in catalog:
        cells = [c.strip() for c in rows[event.subject].split("│") if c.strip()]
        assert cells[1] == "1" and cells[2].isdigit(), cells  # latest version, id
        assert cells[3] == ("differs" if event.subject == changed else "matches"), cells


@pytest.mark.parametrize("command", ["register", "check", "list"])
def test_registry_down_is_one_clear_line(schemas_dir, command: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = choreo(["schemas", command], schemas_dir, url)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: schema registry unreachable at {url}: [Errno 111] Connection refused"], lines


def test_subjects_follow_topic_record_name_strategy(schemas_dir, schema_registry_url) -> None:
    assert choreo(["schemas", "register"], schemas_dir, schema_registry_url).exit_code == 0
    client = SchemaRegistryClient({"url": schema_registry_url})
    registered = set(client.get_subjects())
    for event in SchemaCatalog.load(schemas_dir):
        assert event.subject in registered
        latest = client.get_latest_version(event.subject)
        assert json.loads(latest.schema.schema_str)["name"] in (event.name, event.full_name)
    assert len(REFERENCE) == len(SchemaCatalog.load(schemas_dir))
