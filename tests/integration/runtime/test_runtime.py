"""The runtime against the real broker and registry: handling, headers, order, dedupe, poison, transactions."""

from __future__ import annotations

import sqlite3
import struct
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from choreo import Context, EventValidationError, Service
from choreo.envelope import derived_event_id
from choreo.events import bind
from choreo.observability import metrics
from choreo.serde.avro import AvroEventSerde
from choreo.testing.processes import wait_until
from tests.integration.runtime.conftest import EchoEnv, running
from tests.support.echo import Ping, Pong, make_echo_service
from tests.support.kafka import count_at_least, headers_of, produce_raw, read_topic


def _publish_pings(env: EchoEnv, keys: int, per_key: int) -> dict[str, str]:
    """Publish per_key Pings for each key, interleaved; return ce_id → key."""
    ids: dict[str, str] = {}
    with env.publisher() as publisher:
        for seq in range(per_key):
            for k in range(keys):
                envelope = publisher.publish(Ping(key=f"k{k}", seq=seq))
                ids[envelope.event_id] = f"k{k}"
    return ids


def test_outputs_carry_envelope_and_correlation_headers(echo_env: EchoEnv, unique) -> None:
    with echo_env.publisher() as publisher:
        roots = [publisher.publish(Ping(key=f"k{i}", seq=i)) for i in range(20)]
    with running(make_echo_service(unique("echo")), echo_env):
        pongs = read_topic(echo_env.kafka_config, echo_env.out_topic, until=count_at_least(20))
    by_cause = {headers_of(m)["causation-id"]: m for m in pongs}
    for root in roots:
        message = by_cause[root.event_id]
        headers = headers_of(message)
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_type"] == "io.choreo.test.Pong"
        assert headers["ce_id"] == derived_event_id(root.event_id, 0, "io.choreo.test.Pong")
        assert headers["ce_subject"] == message.key().decode() == root.subject
        assert headers["correlation-id"] == root.correlation_id
        assert headers["request-id"] and headers["request-id"] != root.request_id
        assert headers["ce_source"].startswith("echo-")
        assert message.value()[0] == 0  # Confluent wire format: magic byte


def test_ten_thousand_events_keep_per_key_order(echo_env: EchoEnv, unique) -> None:
    keys, per_key = 1000, 10
    _publish_pings(echo_env, keys, per_key)
    with running(make_echo_service(unique("echo")), echo_env, batch_size=1000):
        pongs = read_topic(echo_env.kafka_config, echo_env.out_topic,
                           until=count_at_least(keys * per_key), timeout_s=180)
    serde = AvroEventSerde(SchemaRegistryClient({"url": echo_env.settings.schema_registry_url}))
    pong_binding = bind(Pong, echo_env.catalog)
    seqs_by_key: dict[str, list[int]] = defaultdict(list)
    for message in sorted(pongs, key=lambda m: (m.partition(), m.offset())):
        pong = serde.decode(pong_binding, message.value())
        seqs_by_key[pong.key].append(pong.seq)
    assert len(pongs) == keys * per_key
    assert len({headers_of(m)["ce_id"] for m in pongs}) == keys * per_key
    assert all(seqs == list(range(per_key)) for seqs in seqs_by_key.values())
    assert len(seqs_by_key) == keys


def test_redelivered_event_is_skipped_as_duplicate(echo_env: EchoEnv, unique) -> None:
    service = make_echo_service(unique("echo"))
    with echo_env.publisher() as publisher:
        first = publisher.publish(Ping(key="dup", seq=1))
    raw = read_topic(echo_env.kafka_config, echo_env.in_topic, until=count_at_least(1))[0]
    before = metrics.DUPLICATES.labels(service.name, "io.choreo.test.Ping")._value.get()
    # The same record again (same ce_id), as a producer retry or a replay would deliver it.
    produce_raw(echo_env.kafka_config, echo_env.in_topic, [(raw.key(), raw.value(), raw.headers())])
    with echo_env.publisher() as publisher:
        publisher.publish(Ping(key="dup", seq=2))
    with running(service, echo_env):
        pongs = read_topic(echo_env.kafka_config, echo_env.out_topic, until=count_at_least(2))
        wait_for = metrics.DUPLICATES.labels(service.name, "io.choreo.test.Ping")
        wait_until(lambda: wait_for._value.get() >= before + 1, 30, message="duplicate counted")
    assert len(pongs) == 2
    assert {headers_of(m)["causation-id"] for m in pongs} >= {first.event_id}


def test_garbage_and_unknown_schema_id_do_not_stop_the_service(echo_env: EchoEnv, unique) -> None:
    ce = [("ce_specversion", b"1.0"), ("ce_type", b"io.choreo.test.Ping"), ("ce_source", b"t"),
          ("ce_time", b"2026-01-01T00:00:00Z")]
    produce_raw(echo_env.kafka_config, echo_env.in_topic, [
        (b"bad", b"\xff\xfegarbage", [("ce_id", b"g1"), *ce]),
        (b"bad", b"\x00" + struct.pack(">I", 987654) + b"\x02", [("ce_id", b"g2"), *ce]),
        (b"bad", b"no headers at all", []),
    ])
    with echo_env.publisher() as publisher:
        publisher.publish(Ping(key="good", seq=7))
    with running(make_echo_service(unique("echo")), echo_env):
        pongs = read_topic(echo_env.kafka_config, echo_env.out_topic, until=count_at_least(1))
    assert [m.key() for m in pongs] == [b"good"]


def test_invalid_payload_is_refused_before_sending(echo_env: EchoEnv) -> None:
    with echo_env.publisher() as publisher:
        with pytest.raises(EventValidationError, match="seq"):
            publisher.publish(Ping.model_construct(key="k", seq=2**70))
        with pytest.raises(EventValidationError, match="key"):
            publisher.publish(Ping.model_construct(key=None, seq=1))


def test_async_and_generator_handlers(echo_env: EchoEnv, unique) -> None:
    service = Service(unique("gen"))

    @service.handler(Ping)
    async def twice(event: Ping, ctx: Context) -> AsyncIterator[Pong]:  # async generator: yields two events
        yield Pong(key=event.key, seq=event.seq)
        yield Pong(key=event.key, seq=event.seq + 1000)

    with echo_env.publisher() as publisher:
        root = publisher.publish(Ping(key="a", seq=1))
    with running(service, echo_env):
        pongs = read_topic(echo_env.kafka_config, echo_env.out_topic, until=count_at_least(2))
    ids = sorted(headers_of(m)["ce_id"] for m in pongs)
    assert ids == sorted(derived_event_id(root.event_id, i, "io.choreo.test.Pong") for i in range(2))


def test_transactional_handler_commits_state_with_the_mark(echo_env: EchoEnv, unique) -> None:
    service = Service(unique("tx"))

    @service.handler(Ping, transactional=True)
    def store_and_echo(event: Ping, ctx: Context) -> Pong:
        connection = ctx.tx.connection
        connection.execute("CREATE TABLE IF NOT EXISTS seen_pings (key TEXT, seq INTEGER)")
        connection.execute("INSERT INTO seen_pings VALUES (?, ?)", (event.key, event.seq))
        return Pong(key=event.key, seq=event.seq)

    with echo_env.publisher() as publisher:
        for i in range(5):
            publisher.publish(Ping(key=f"t{i}", seq=i))
    with running(service, echo_env):
        pongs = read_topic(echo_env.kafka_config, echo_env.out_topic, until=count_at_least(5))
    assert len(pongs) == 5
    rows = sqlite3.connect(echo_env.settings.state_dir / f"{service.name}.sqlite3").execute(
        "SELECT key, seq FROM seen_pings ORDER BY seq").fetchall()
    assert rows == [(f"t{i}", i) for i in range(5)]


def test_each_outbox_entry_keeps_the_id_of_the_record_sent_for_it(echo_env: EchoEnv, unique,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A transactional handler with several outputs: what the outbox kept and what was sent agree."""
    from choreo.idempotency.sqlite import SQLiteTransaction

    kept: dict[str, list] = {}  # input event id → its outbox records (deleted from the store once sent)
    record = SQLiteTransaction.record

    def spy(self, event_id, outbox):  # noqa: ANN001, ANN202 - wraps the store's own method
        kept[event_id] = list(outbox)
        return record(self, event_id, outbox)

    monkeypatch.setattr(SQLiteTransaction, "record", spy)
    service = Service(unique("txmany"))

    @service.handler(Ping, transactional=True)
    def echo_thrice(event: Ping, ctx: Context) -> list[Pong]:
        return [Pong(key=event.key, seq=event.seq * 10 + i) for i in range(3)]

    with echo_env.publisher() as publisher:
        roots = [publisher.publish(Ping(key=f"m{i}", seq=i)) for i in range(4)]
    with running(service, echo_env):
        pongs = read_topic(echo_env.kafka_config, echo_env.out_topic, until=count_at_least(12))
    sent = {headers_of(m)["ce_id"]: m for m in pongs}
    assert set(kept) == {root.event_id for root in roots}
    for input_id, outbox in kept.items():
        assert [r.event_id for r in outbox] == [derived_event_id(input_id, i, "io.choreo.test.Pong") for i in range(3)]
        for entry in outbox:  # the record sent under that id is the one the outbox kept
            assert sent[entry.event_id].value() == entry.value
            assert headers_of(sent[entry.event_id])["ce_id"] == entry.event_id
    # Counted once each, under the output's topic and type.
    produced = metrics.PRODUCED.labels(service.name, echo_env.out_topic, "io.choreo.test.Pong")
    assert produced._value.get() == 12


def test_an_emitted_type_the_handler_does_not_declare_is_refused_and_dead_lettered(echo_env: EchoEnv,
                                                                                  unique) -> None:
    """The map (`choreo graph`) is drawn from the declarations: the runtime keeps it honest."""
    from choreo.retry.headers import dlq_topic
    from tests.support.kafka import read_all

    service = Service(unique("liar"))

    @service.handler(Ping)
    def lies(event: Ping, ctx: Context) -> None:  # declares nothing, emits a Pong
        return Pong(key=event.key, seq=event.seq)  # type: ignore[return-value]

    with echo_env.publisher() as publisher:
        publisher.publish(Ping(key="a", seq=1))
    with running(service, echo_env):
        dead = read_topic(echo_env.kafka_config, dlq_topic(service.name), until=count_at_least(1))
    headers = headers_of(dead[0])
    assert headers["dlq-reason"] == "permanent-error" and headers["dlq-error-type"] == "UndeclaredEmission"
    assert "emitted Pong but declares nothing" in headers["dlq-error-message"]
    assert read_all(echo_env.settings, echo_env.out_topic) == []
