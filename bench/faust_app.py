"""The faust-streaming side of the throughput comparison: a standalone app, run in its own venv.

Run with ``.venv-faust/bin/python bench/faust_app.py --bootstrap … --registry … --in-topic … --out-topic …
--count N`` (see bench/frameworks.py). It does the same per-record work as bench/quix_app.py:
consume → Avro decode (registry) → Ping → Pong → Avro encode (registry, subject
``<out-topic>-io.choreo.test.Pong``) → send with the input's key → commit. It is one faust agent with
faust's defaults (aiokafka; offsets of acked events committed every 2.8 s), bar the session timeout Tansu
needs (faust fixes its fetch wait at 1.5 s: no setting for the second one the other apps set), no web server
and its data dir in a temp dir. faust has no registry-aware Avro codec, so confluent-kafka's
AvroDeserializer/AvroSerializer are wrapped in a faust Codec, as a faust user would.

The clock starts when the 1000th message has been handled and stops when the N-th has; one JSON line
goes to stdout once the worker has stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

import faust
from app_support import Window, arguments, schemas
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from faust.serializers import codecs


class RegistryAvro(codecs.Codec):
    """One direction of confluent-kafka's registry Avro serde as a faust codec: ``serde`` is an
    AvroDeserializer (the topic is only read) or an AvroSerializer (only written), called with the topic's
    SerializationContext, which faust's codecs do not get."""

    def __init__(self, children: tuple[codecs.CodecT, ...] | None = None, *,
                 serde: Callable[[Any, SerializationContext], Any], topic: str) -> None:
        super().__init__(children, serde=serde, topic=topic)  # kwargs kept: faust clones codecs
        self.serde = serde
        self.ctx = SerializationContext(topic, MessageField.VALUE)

    def _loads(self, s: bytes) -> Any:
        return self.serde(s, self.ctx)

    def _dumps(self, s: Any) -> bytes:
        return self.serde(s, self.ctx)  # type: ignore[no-any-return]


def build(args: argparse.Namespace, window: Window) -> faust.Worker:
    """The app (one agent: Ping in, Pong out) and the worker that runs it."""
    found = schemas()
    registry = SchemaRegistryClient({"url": args.registry})
    app = faust.App(
        f"faust-{uuid.uuid4().hex[:6]}",  # also the consumer group
        broker=f"kafka://{args.bootstrap}",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6,  # Tansu: a join waits about half the session timeout (faust's default: 60 s)
        web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="faust-data-"),  # unused (no tables), but keep it out of cwd
    )
    pings = app.topic(args.in_topic, key_serializer="raw", value_serializer=RegistryAvro(
        serde=AvroDeserializer(registry, json.dumps(found["PING_SCHEMA"])), topic=args.in_topic))
    pongs = app.topic(args.out_topic, key_serializer="raw", value_serializer=RegistryAvro(
        serde=AvroSerializer(registry, json.dumps(found["PONG_SCHEMA"]),
                             conf={"subject.name.strategy": topic_record_subject_name_strategy}),
        topic=args.out_topic))
    # Its banner and spinner to stderr: stdout carries only the figures.
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, stdout=sys.stderr, redirect_stdouts=False)

    @app.agent(pings)
    async def echo(stream: faust.Stream[Any]) -> None:
        async for event in stream.events():  # events, not values: the key is needed
            ping = event.value
            await pongs.send(key=event.key, value={"key": ping["key"], "seq": ping["seq"]})
            if window.tally():
                asyncio.ensure_future(worker.stop())  # stops this agent too: not awaited from within it

    return worker


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    window = Window(args.count)
    try:
        build(args, window).execute_from_commandline()
    except SystemExit as exit_:
        if exit_.code not in (0, None) or window.handled < args.count:
            raise
    window.report()


if __name__ == "__main__":
    main()
    sys.exit(0)
