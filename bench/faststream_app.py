"""The FastStream side of the throughput comparison: a standalone app, run in its own venv.

Run with ``.venv-faststream/bin/python bench/faststream_app.py --bootstrap … --registry … --in-topic …
--out-topic … --count N`` (see bench/frameworks.py). It does the same per-record work as bench/quix_app.py:
consume → Avro decode (registry) → Ping → Pong → Avro encode (registry, subject
``<out-topic>-io.choreo.test.Pong``) → produce with the input's key → commit. It uses FastStream's
KafkaBroker (aiokafka) with its defaults, bar the two consumer settings Tansu needs: so each Pong is
published and confirmed before the next Ping is handled, and offsets are committed by aiokafka's
auto-commit (FastStream's default ack policy, ACK_FIRST). FastStream has no Avro support of its own, so
the serde is confluent-kafka's AvroDeserializer (a custom decoder) and AvroSerializer (called by the
handler, whose bytes FastStream publishes as they are), as a FastStream user would wire them.

The clock starts when the 1000th message has been handled and stops when the N-th has; one JSON line
goes to stdout, after FastStream's own few lines. FastStream logs two INFO lines per message by default;
they are turned down to DEBUG (not shown), as no other runner logs per message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from typing import Any

from app_support import Window, arguments, schemas
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaResponse
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage


def build(args: argparse.Namespace, window: Window) -> FastStream:
    """The app: one subscriber on the input topic whose handler's return value goes to the output topic."""
    found = schemas()
    registry = SchemaRegistryClient({"url": args.registry})
    deserializer = AvroDeserializer(registry, json.dumps(found["PING_SCHEMA"]))
    serializer = AvroSerializer(registry, json.dumps(found["PONG_SCHEMA"]),
                                conf={"subject.name.strategy": topic_record_subject_name_strategy})
    in_ctx = SerializationContext(args.in_topic, MessageField.VALUE)
    out_ctx = SerializationContext(args.out_topic, MessageField.VALUE)

    # Its per-message "Received"/"Processed" lines at DEBUG, below the logger's INFO (with them: 15–25% slower).
    broker = KafkaBroker(args.bootstrap, log_level=logging.DEBUG)
    app = FastStream(broker)

    async def decode(message: StreamMessage[Any]) -> dict[str, Any]:  # async: a sync one runs in a thread
        return deserializer(message.body, in_ctx)  # type: ignore[no-any-return]

    @broker.subscriber(
        args.in_topic, group_id=f"faststream-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
        # Tansu: a join waits about half the session timeout (aiokafka's default: 10 s); same fetch wait as ours.
        session_timeout_ms=6000, fetch_max_wait_ms=10, decoder=decode)
    @broker.publisher(args.out_topic)
    async def echo(ping: dict[str, Any], message: KafkaMessage) -> KafkaResponse:  # message: for its key
        # (FastStream's documented way to reach the record; fast_depends resolves it in a worker thread)
        # Encoded before it counts: FastStream logs a handler's exception and goes on, so a message
        # whose Pong could not be built must not count as handled.
        value = serializer({"key": ping["key"], "seq": ping["seq"]}, out_ctx)
        if window.tally():
            app.exit()  # run() notices within 0.1 s, then stops the broker (committing) and returns
        return KafkaResponse(value, key=message.raw_message.key)

    return app


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    window = Window(args.count)
    asyncio.run(build(args, window).run())
    window.report()


if __name__ == "__main__":
    main()
    sys.exit(0)
