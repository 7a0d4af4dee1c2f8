"""Throughput of the same work in a Quix Streams app (bench/quix_app.py), run in its own venv.

Quix Streams pins its own confluent-kafka and pydantic, so it lives in ``.venv-quix`` rather than the
project venv: ``python3.11 -m venv .venv-quix && .venv-quix/bin/pip install quixstreams``.
"""

from __future__ import annotations

from bench.runner import ROOT, run_in_process
from bench.throughput import Result

PYTHON = ROOT / ".venv-quix" / "bin" / "python"
APP = ROOT / "bench" / "quix_app.py"


def quix_throughput(bootstrap: str, registry_url: str, in_topic: str, out_topic: str,
                    count: int) -> Result | None:
    """Run the Quix app over ``count`` pre-produced Pings; None (with the reason printed) if no venv.

    The app times everything after its first 1000 messages, as the other runners skip their first batch.
    """
    if not PYTHON.exists():
        print(f"Quix Streams: not measured ({PYTHON.relative_to(ROOT)} missing; see bench/quix.py)")
        return None
    figures = run_in_process([str(PYTHON), str(APP), "--bootstrap", bootstrap, "--registry", registry_url,
                              "--in-topic", in_topic, "--out-topic", out_topic, "--count", str(count)])
    return Result("Quix Streams app", int(figures["events"]), float(figures["seconds"]),
                  float(figures["cpu_seconds"]))
