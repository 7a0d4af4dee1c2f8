"""Ordered retries when two members change one key at once: no parked record is left stranded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message

from choreo.idempotency import SQLiteStore
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.kafka.producer import ReliableProducer
from choreo.retry import headers as h
from choreo.runtime.ordering import KeyOrdering
from tests.support.kafka import read_topic


def _incoming(event_id: str, key: str = "K") -> Message:
    return Message(topic="orders", partition=0, offset=1, key=key.encode(), value=b"v-" + event_id.encode(),
                   headers=[("ce_id", event_id.encode())])


@pytest.mark.parametrize("first", ["finisher", "parker"])
def test_a_record_parked_behind_a_blocker_another_member_just_finished_is_released(
        kafka_config: dict[str, Any], unique: Callable[[str], str], tmp_path: Path, first: str) -> None:
    service = unique("ordered")
    ensure_topics(kafka_config, [TopicSpec(h.retry_topic(service, 1), 1)])
    path = tmp_path / "store.sqlite3"
    store_a, store_b = SQLiteStore(path, service=service), SQLiteStore(path, service=service)
    producer = ReliableProducer(kafka_config)
    store_a.apply_parking(service, blocks={"K": "X"}, parked=[], released=[])  # X waits in a retry topic
    member_a, member_b = KeyOrdering(service, store_a), KeyOrdering(service, store_b)
    try:
        member_a.begin({"K"})
        member_b.begin({"K"})
        assert member_b.must_park("K", "R")
        member_b.park("K", _incoming("R"), "R")  # B parks R behind X ...
        member_a.done("K", "X", producer)  # ... while A finishes X and finds nothing parked yet
        producer.flush()
        # Whichever commits last sees R parked behind nothing (it would wait for ever) and releases it.
        for member in ([member_a, member_b] if first == "finisher" else [member_b, member_a]):
            member.finish(producer)
        assert store_a.stranded(service, ["K"]) == []
        assert store_a.blockers(service, ["K"]) == {"K": "R"}
        assert store_a.parked(service, "K") == []
        released = read_topic(kafka_config, h.retry_topic(service, 1), until=lambda got: len(got) >= 1)
        assert [m.value() for m in released] == [b"v-R"]
    finally:
        store_a.close()
        store_b.close()
