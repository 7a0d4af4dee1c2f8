"""One throughput run in a fresh process, as a service runs in production: no state left over from the
runs before it (objects, GC settings, lingering clients) in the process that is measured.

``python -m bench.runner RUNNER --bootstrap … --registry … --schemas-dir … --state-dir … --in-topic …
--out-topic … --count N`` (RUNNER: choreo, official or fastavro) prints one JSON line with the Result.
bench/throughput.py starts it once per run; the Quix app runs the same way from its own venv.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.throughput import NAMES, Result, run_choreo, run_raw
from choreo.config import Settings
from choreo.schemas.catalog import SchemaCatalog

ROOT = Path(__file__).resolve().parent.parent


def run_in_process(command: list[str], timeout_s: float = 300) -> dict[str, Any]:
    """Run a runner's command, return the JSON object on its last stdout line (its stderr on failure)."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,  # noqa: S603
                                   check=False, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:  # killed by run(): say why it hung, if it said anything
        sys.stderr.write(exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or "")
        raise
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr)
        raise RuntimeError(f"{command[:4]} exited with {completed.returncode}")
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def runner_command(runner: str, settings: Settings, in_topic: str, out_topic: str, count: int) -> list[str]:
    """The command that runs ``runner`` over ``count`` pre-produced Pings in a fresh Python process."""
    return [sys.executable, "-m", "bench.runner", runner, "--bootstrap", settings.bootstrap_servers,
            "--registry", settings.schema_registry_url, "--schemas-dir", str(settings.schemas_dir),
            "--state-dir", str(settings.state_dir), "--in-topic", in_topic, "--out-topic", out_topic,
            "--count", str(count)]


def measure(runner: str, settings: Settings, in_topic: str, out_topic: str, count: int) -> Result:
    """``runner`` over ``count`` pre-produced Pings, in a fresh Python process."""
    return Result(**run_in_process(runner_command(runner, settings, in_topic, out_topic, count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runner", choices=("choreo", "choreo-untracked", "official", "fastavro"))
    for option in ("--bootstrap", "--registry", "--schemas-dir", "--state-dir", "--in-topic", "--out-topic"):
        parser.add_argument(option, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    settings = Settings(bootstrap_servers=args.bootstrap, schema_registry_url=args.registry,
                        schemas_dir=Path(args.schemas_dir), state_dir=Path(args.state_dir))
    if args.runner in ("choreo", "choreo-untracked"):  # the second with CHOREO_TASK_RECORDS=false
        settings = settings.model_copy(update={"task_records": args.runner == "choreo"})
        result = run_choreo(settings, SchemaCatalog.load(settings.schemas_dir), args.count, NAMES[args.runner])
    else:
        result = run_raw(settings, args.in_topic, args.out_topic, args.count, args.runner)
    print(json.dumps(dataclasses.asdict(result)), flush=True)


if __name__ == "__main__":
    main()
