"""`choreo schemas`: the line per subject; one clear error line for a bad catalog or registry URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from choreo.cli.main import app
from choreo.cli.schemas import outcome_line
from choreo.schemas.registration import Outcome, SubjectOutcome, summarize_reasons

runner = CliRunner()
SCHEMAS_DIR = Path(__file__).resolve().parents[3] / "schemas"
SUBJECT = "orders-io.choreo.shop.OrderPlaced"


def test_outcome_lines() -> None:
    new = SubjectOutcome(SUBJECT, "io.choreo.shop.OrderPlaced", Outcome.NEW_VERSION, schema_id=7, version=2)
    assert outcome_line(new).plain == f"new version   {SUBJECT}  id 7 v2"
    planned = SubjectOutcome(SUBJECT, "io.choreo.shop.OrderPlaced", Outcome.NEW_SUBJECT)
    assert outcome_line(planned, dry_run=True).plain == f"new subject   {SUBJECT}  (would register)"
    bad = SubjectOutcome(SUBJECT, "io.choreo.shop.OrderPlaced", Outcome.INCOMPATIBLE,
                         reasons=("[READER_FIELD_MISSING_DEFAULT_VALUE] coupon", "second"))
    assert outcome_line(bad).plain == (
        f"incompatible  {SUBJECT}: [READER_FIELD_MISSING_DEFAULT_VALUE] coupon; second"
    )


def _error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("command", ["register", "check", "list"])
def test_missing_schemas_dir_is_one_line(tmp_path: Path, command: str) -> None:
    result = runner.invoke(app, ["schemas", command], env={"CHOREO_SCHEMAS_DIR": str(tmp_path / "nope")})
    assert "schemas directory" in _error_line(result)


@pytest.mark.parametrize("command", ["register", "check", "list"])
def test_bad_avsc_is_one_line_naming_the_file(tmp_path: Path, command: str) -> None:
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "OrderPlaced.avsc").write_text(json.dumps({"type": "record", "name": "Other",
                                                                       "fields": []}))
    result = runner.invoke(app, ["schemas", command], env={"CHOREO_SCHEMAS_DIR": str(tmp_path)})
    line = _error_line(result)
    assert "OrderPlaced.avsc" in line and "file name must be the record name" in line


def test_bad_registry_url_is_one_line() -> None:
    result = runner.invoke(app, ["schemas", "check"], env={"CHOREO_SCHEMA_REGISTRY_URL": "localhost:8081",
                                                         "CHOREO_SCHEMAS_DIR": str(SCHEMAS_DIR)})
    assert "invalid schema registry URL" in _error_line(result)


def test_registry_reasons_are_summarized() -> None:
    messages = [
        "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'coupon' at path "
        "'/fields/6' in the new schema has no default value and is missing in the old schema', "
        "additionalInfo:'coupon'}",
        "{oldSchemaVersion: 3}",
        "{oldSchema: '{\"type\":\"record\",\"name\":\"OrderPlaced\",\"fields\":[]}'}",
        "{compatibility: 'BACKWARD'}",
    ]
    assert summarize_reasons(messages) == (
        "READER_FIELD_MISSING_DEFAULT_VALUE: The field 'coupon' at path '/fields/6' in the new schema has no "
        "default value and is missing in the old schema (BACKWARD, against v3)",
    )
    assert summarize_reasons(["Schema being registered is incompatible"]) == (
        "Schema being registered is incompatible",
    )
