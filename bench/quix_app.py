"""The Quix Streams side of the throughput comparison: a standalone app, run in its own venv.

Run with ``.venv-quix/bin/python bench/quix_app.py --bootstrap … --registry … --in-topic … --out-topic …
--count N`` (see bench/quix.py). It does the same per-record work as bench/throughput.py's loops:
consume → Avro decode (registry) → Ping → Pong → Avro encode (registry, subject
``<out-topic>-io.choreo.test.Pong``) → produce with the input's key → commit, using Quix's own
Application and Avro serde with its defaults, bar the two consumer settings Tansu needs.

The clock starts when the 1000th message has been handled (skipping the group join, as the other
runners skip their first batch) and stops when the N-th has; one JSON line goes to stdout.
This venv has neither choreo nor its test package, so the schemas are read from tests/support/echo.py
as literals rather than imported.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import topic_record_subject_name_strategy
from quixstreams import Application
from quixstreams.models.serializers.avro import AvroDeserializer, AvroSerializer
from quixstreams.models.serializers.schema_registry import (
    SchemaRegistryClientConfig,
    SchemaRegistrySerializationConfig,
)

WARMUP = 1000  # like the other runners' first batch: not timed
ECHO = Path(__file__).resolve().parent.parent / "tests" / "support" / "echo.py"


def _schemas() -> dict[str, Any]:
    """PING_SCHEMA and PONG_SCHEMA from tests/support/echo.py, evaluated as literals (no import)."""
    found: dict[str, Any] = {}
    for node in ast.parse(ECHO.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("PING_SCHEMA", "PONG_SCHEMA"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for option in ("--bootstrap", "--registry", "--in-topic", "--out-topic"):
        parser.add_argument(option, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    if args.count <= WARMUP:
        parser.error(f"--count must exceed the {WARMUP} warm-up messages")
    schemas = _schemas()
    registry = SchemaRegistryClientConfig(url=args.registry)

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=f"quix-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        # Tansu: librdkafka's 45 s session timeout makes a join take ~23 s; same fetch wait as ours.
        consumer_extra_config={"session.timeout.ms": 6000, "fetch.wait.max.ms": 10},
        state_dir=tempfile.mkdtemp(prefix="quix-state-"),  # unused (stateless), but keep it out of cwd
        loglevel="WARNING",
    )
    in_topic = app.topic(args.in_topic, value_deserializer=AvroDeserializer(
        schema=schemas["PING_SCHEMA"], schema_registry_client_config=registry))
    out_topic = app.topic(args.out_topic, value_serializer=AvroSerializer(
        schema=schemas["PONG_SCHEMA"], schema_registry_client_config=registry,
        schema_registry_serialization_config=SchemaRegistrySerializationConfig(
            subject_name_strategy=topic_record_subject_name_strategy)))

    marks = {"handled": 0, "start": 0.0, "end": 0.0, "cpu_start": 0.0, "cpu_end": 0.0}

    def tally(_pong: dict[str, Any]) -> None:
        marks["handled"] += 1
        if marks["handled"] == WARMUP:
            marks["start"], marks["cpu_start"] = time.perf_counter(), time.process_time()
        elif marks["handled"] == args.count:
            marks["end"], marks["cpu_end"] = time.perf_counter(), time.process_time()
            app.stop()  # the loop ends after this message; run() then commits and closes

    sdf = app.dataframe(in_topic)
    sdf = sdf.apply(lambda ping: {"key": ping["key"], "seq": ping["seq"]})
    sdf = sdf.update(tally)
    sdf.to_topic(out_topic)  # keyed like the input (Quix keeps the message key by default)
    app.run()

    seconds = marks["end"] - marks["start"]
    events = args.count - WARMUP
    print(json.dumps({"events": events, "seconds": seconds,
                      "cpu_seconds": marks["cpu_end"] - marks["cpu_start"]}), flush=True)


if __name__ == "__main__":
    main()
    sys.exit(0)
