"""Throughput of the same work in other stream-processing frameworks, each a standalone app in its own venv.

Each framework pins its own Kafka client and libraries, so none of them lives in the project venv:
``make bench-quix-env``, ``make bench-faststream-env`` and ``make bench-faust-env`` build ``.venv-quix``,
``.venv-faststream`` and ``.venv-faust``. A framework whose venv is missing is not measured (one line says
so). Every app takes ``--bootstrap --registry --in-topic --out-topic --count N``, handles N of the
pre-produced Pings (the first 1000 untimed, as the other runners skip their first batch) and prints one JSON
line with ``events``, ``seconds`` and ``cpu_seconds`` (see bench/quix_app.py).

FastStream (each publish awaited before the next message) and faust run at a few hundred to ~1,300 events/s
here: they handle at most ``cap`` of the run's events, so one run stays under ~20 s; the table's ``events``
column shows what was timed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.runner import ROOT, run_in_process
from bench.throughput import NAMES, Result


@dataclass(frozen=True)
class Framework:
    """One framework's app: where its venv and script are, what its results are called."""

    name: str  # the Result's name: bench.throughput.NAMES[key]
    venv: str  # relative to the repo root; its make target is bench-<key>-env
    app: str  # relative to bench/
    cap: int | None = None  # most events handled per run (None: all of them)

    @property
    def python(self) -> Path:
        return ROOT / self.venv / "bin" / "python"


FRAMEWORKS = {
    "quix": Framework(NAMES["quix"], ".venv-quix", "quix_app.py"),
    "faststream": Framework(NAMES["faststream"], ".venv-faststream", "faststream_app.py", cap=6000),
    "faust": Framework(NAMES["faust"], ".venv-faust", "faust_app.py", cap=20000),
}
_reported: set[str] = set()  # frameworks whose missing venv was already reported in this process


def framework_throughput(key: str, bootstrap: str, registry_url: str, in_topic: str, out_topic: str,
                         count: int) -> Result | None:
    """Run framework ``key``'s app over ``count`` pre-produced Pings (at most its cap); None if no venv."""
    framework = FRAMEWORKS[key]
    if not framework.python.exists():
        if key not in _reported:
            _reported.add(key)
            print(f"{framework.name}: not measured ({framework.venv} missing: make bench-{key}-env)")
        return None
    handled = count if framework.cap is None else min(count, framework.cap)
    if handled < count and key not in _reported:
        _reported.add(key)
        print(f"{framework.name}: handles {handled:,} of the {count:,} events per run (slow: bench/frameworks.py)")
    figures = run_in_process([str(framework.python), str(ROOT / "bench" / framework.app), "--bootstrap", bootstrap,
                              "--registry", registry_url, "--in-topic", in_topic, "--out-topic", out_topic,
                              "--count", str(handled)])
    return Result(framework.name, **figures)  # figures: events, seconds, cpu_seconds (app_support.Window.report)
