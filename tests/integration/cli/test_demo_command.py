"""`choreo demo` as a real process: bad arguments and an unreachable order API are one clear line; against a
real `choreo dev` it places a mix of orders and reports each outcome against its rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from choreo.kafka.embedded import free_port
from tests.integration.cli.test_dev_command import EXISTING, start_dev

ROOT = Path(__file__).resolve().parents[3]
SHOP = ("order", "payment", "fraud", "inventory", "shipping")  # what every outcome needs (notification is optional)


def demo(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "choreo.cli.main", "demo", *args],
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"}, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("args", "complaint"), [
    (["--orders", "0"], "Invalid value for '--orders'"),
    (["--orders", "ten"], "Invalid value for '--orders'"),
    (["--rate", "0"], "Invalid value for '--rate'"),
    (["--timeout", "-1"], "Invalid value for '--timeout'"),
    (["--frobnicate"], "No such option"),
])
def test_bad_arguments_are_refused_without_a_traceback(args: list[str], complaint: str) -> None:
    result = demo(*args)
    assert result.returncode == 2
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_an_unreachable_order_api_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = demo("--orders", "5", "--url", url)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: order API not reachable at {url} (ConnectError")


@pytest.mark.skipif(not set(SHOP) <= set(EXISTING),
                    reason=f"needs the reference services {', '.join(s for s in SHOP if s not in EXISTING)} "
                           "in services/ (not written yet)")
@pytest.mark.timeout(150)
def test_demo_against_a_real_choreo_dev_reaches_every_outcome(tmp_path: Path) -> None:
    dev, ports = start_dev(tmp_path)
    try:
        result = demo("--orders", "20", "--rate", "40", "--timeout", "45", "--slow-ttl", "4",
                      "--url", f"http://127.0.0.1:{ports['order']}", "--json", "--strict", timeout=120)
        assert "Traceback" not in result.stderr, result.stderr
        summary = json.loads(result.stdout)
        detail = json.dumps(summary["rules"], indent=1) + "\n" + result.stderr
        assert summary["placed"] == 20, detail
        assert summary["mismatches"] == [], detail
        assert summary["outcomes"]["running"] == 0, detail
        assert {rule["rule"] for rule in summary["rules"]} == {"plain", "declined", "sold-out", "fraud", "flaky",
                                                               "slow"}
        assert summary["ok"] is True and result.returncode == 0, detail
        latency = summary["latency_s"]
        assert latency["source"] == "server" and latency["count"] == 20
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
        slow = next(rule for rule in summary["rules"] if rule["rule"] == "slow")
        assert slow["p50_s"] >= 4.0  # expired at its deadline, not before
    finally:
        dev.terminate()
