"""Marks written behind the consumer: a redelivery that races its own marks is still a duplicate,
and offsets are stored only once the marks are durable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from confluent_kafka.schema_registry import SchemaRegistryClient

from choreo.idempotency import open_store
from choreo.kafka.producer import ReliableProducer
from choreo.retry.router import RetryRouter
from choreo.runtime.batch import BatchProcessor
from choreo.runtime.marks import MarkWriter
from choreo.serde.avro import AvroEventSerde
from tests.integration.runtime.conftest import EchoEnv
from tests.support.echo import Ping, make_echo_service
from tests.support.kafka import count_at_least, read_all, read_topic


def _processor(env: EchoEnv, name: str) -> BatchProcessor:
    bound = make_echo_service(name).bind(env.catalog)
    store = open_store(env.settings, name)
    serde = AvroEventSerde(SchemaRegistryClient({"url": env.settings.schema_registry_url}))
    processor = BatchProcessor(bound, serde=serde, producer=ReliableProducer(env.kafka_config), store=store,
                               failures=RetryRouter.for_service(bound), loop=asyncio.new_event_loop())
    processor.marks.close()
    processor.marks = MarkWriter(store, name, linger_s=60.0)  # marks stay queued until drained
    return processor


def test_a_redelivery_racing_its_own_marks_is_skipped(echo_env: EchoEnv, unique: Callable[[str], str]) -> None:
    with echo_env.publisher() as publisher:
        for i in range(30):
            publisher.publish(Ping(key=f"k{i % 5}", seq=i))
    pings = read_topic(echo_env.kafka_config, echo_env.in_topic, until=count_at_least(30))
    processor = _processor(echo_env, unique("echo"))
    try:
        first = processor.process(pings)
        processor.defer(first, pings)
        processor.settle()
        assert first.handled == 30
        assert processor.marks.completed() == []  # not durable yet: offsets must not be stored

        again = processor.process(pings)  # e.g. a rebalance handed the same records back
        processor.defer(again, pings)
        processor.settle()
        assert (again.handled, again.duplicates) == (0, 30)

        done = processor.marks.drain(timeout_s=10)
        assert len(done) == 2 and done[0] == first.offsets
        assert processor.marks.in_flight == set()  # durable now: the store answers for them
        assert len(processor.store.seen(processor.service, [dict(p.headers())["ce_id"].decode() for p in pings])) == 30
    finally:
        processor.close()
        processor.store.close()
    assert len(read_all(echo_env.settings, echo_env.out_topic)) == 30  # everything once, nothing twice
