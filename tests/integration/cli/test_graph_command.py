"""`choreo graph`: the shop's map from the declarations, and a user's cycle reported with its path."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from choreo.cli.main import app
from choreo.emits import emitted_types
from choreo.flowmap import FlowMap
from tests.support.cyclic import ping, pinger, pong, ponger
from tests.support.echo import Ping, Pong, write_schemas


def test_graph_prints_the_shop_and_passes_its_checks() -> None:
    result = CliRunner().invoke(app, ["graph"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("flowchart LR")
    for edge in ("order -- OrderPlaced --> payment", "payment -- PaymentAuthorized --> inventory",
                 "inventory -- StockReserved --> shipping", "fraud -- FraudCheckPassed --> shipping",
                 "shipping -- ShipmentDispatched --> order", "order -- OrderCompleted --> notification",
                 "order -. timer OrderExpired .-> order"):
        assert edge in result.output, edge
    assert "cycle (intended): order -OrderPlaced-> payment -PaymentAuthorized-> inventory" in result.output
    dot = CliRunner().invoke(app, ["graph", "--format", "dot"])
    assert dot.exit_code == 0 and dot.output.startswith("digraph choreography {")
    assert '"payment" -> "inventory" [label="PaymentAuthorized"];' in dot.output


def test_a_cyclic_user_service_is_reported_with_its_path_and_fails(tmp_path: Path) -> None:
    schemas = write_schemas(tmp_path / "schemas", "pings", "pongs")
    result = CliRunner().invoke(app, ["graph", "tests.support.cyclic:pinger", "tests.support.cyclic:ponger"],
                                env={"CHOREO_SCHEMAS_DIR": str(schemas)})
    assert result.exit_code == 1, result.output
    assert "error: unintended cycle: pinger -Pong-> ponger -Ping-> pinger" in result.output
    assert "pinger -- Pong --> ponger" in result.output and "Traceback" not in result.output


def test_a_bad_format_is_one_clear_line() -> None:
    result = CliRunner().invoke(app, ["graph", "--format", "png"])
    assert result.exit_code == 1 and "--format must be mermaid or dot" in result.output


def test_emits_come_from_return_annotations() -> None:
    assert emitted_types(ping) == {Pong} and emitted_types(pong) == {Ping}
    flow = FlowMap.build([pinger, ponger])
    assert flow.consumed_never_produced() == [] and flow.produced_never_consumed() == []
    assert [len(c) for c in flow.cycles()] == [2]
