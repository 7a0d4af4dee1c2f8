"""The Quix Streams side of the throughput comparison: a standalone app, run in its own venv.

Run with ``.venv-quix/bin/python bench/quix_app.py --bootstrap … --registry … --in-topic … --out-topic …
--count N`` (see bench/frameworks.py). It does the same per-record work as bench/throughput.py's loops:
consume → Avro decode (registry) → Ping → Pong → Avro encode (registry, subject
``<out-topic>-io.choreo.test.Pong``) → produce with the input's key → commit, using Quix's own
Application and Avro serde with its defaults, bar the two consumer settings Tansu needs.

The clock starts when the 1000th message has been handled (skipping the group join, as the other
runners skip their first batch) and stops when the N-th has; one JSON line goes to stdout.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from typing import Any

from app_support import Window, arguments, schemas
from confluent_kafka.schema_registry import topic_record_subject_name_strategy
from quixstreams import Application
from quixstreams.models.serializers.avro import AvroDeserializer, AvroSerializer
from quixstreams.models.serializers.schema_registry import (
    SchemaRegistryClientConfig,
    SchemaRegistrySerializationConfig,
)


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    found = schemas()
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
        schema=found["PING_SCHEMA"], schema_registry_client_config=registry))
    out_topic = app.topic(args.out_topic, value_serializer=AvroSerializer(
        schema=found["PONG_SCHEMA"], schema_registry_client_config=registry,
        schema_registry_serialization_config=SchemaRegistrySerializationConfig(
            subject_name_strategy=topic_record_subject_name_strategy)))
    window = Window(args.count)

    def tally(_pong: dict[str, Any]) -> None:
        if window.tally():
            app.stop()  # the loop ends after this message; run() then commits and closes

    sdf = app.dataframe(in_topic)
    sdf = sdf.apply(lambda ping: {"key": ping["key"], "seq": ping["seq"]})
    sdf = sdf.update(tally)
    sdf.to_topic(out_topic)  # keyed like the input (Quix keeps the message key by default)
    app.run()
    window.report()


if __name__ == "__main__":
    main()
    sys.exit(0)
