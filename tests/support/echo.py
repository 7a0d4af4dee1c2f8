"""A tiny test choreography: `echo` turns each Ping into a Pong on another topic.

Schemas are written per test into a temp folder whose topic folders have unique names, so every
test gets fresh topics and subjects. Behaviour switches come from the environment so the same module
runs in-process and in child processes (`choreo run tests.support.echo:service`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from choreo import Context, Event, Service

PING_SCHEMA = {
    "type": "record", "name": "Ping", "namespace": "io.choreo.test", "doc": "Test input.",
    "fields": [
        {"name": "key", "type": "string", "doc": "Entity id."},
        {"name": "seq", "type": "long", "doc": "Sequence number within the key."},
        {"name": "note", "type": ["null", "string"], "default": None, "doc": "Free text."},
    ],
}
PONG_SCHEMA = {
    "type": "record", "name": "Pong", "namespace": "io.choreo.test", "doc": "Test output.",
    "fields": [
        {"name": "key", "type": "string", "doc": "Entity id."},
        {"name": "seq", "type": "long", "doc": "Sequence number copied from the Ping."},
    ],
}


class Ping(Event, schema="io.choreo.test.Ping", key="key"):
    key: str
    seq: int
    note: str | None = None


class Pong(Event, schema="io.choreo.test.Pong", key="key"):
    key: str
    seq: int


def write_schemas(root: Path, in_topic: str, out_topic: str) -> Path:
    """Write Ping under ``in_topic`` and Pong under ``out_topic``; return the schemas dir."""
    for topic, schema in ((in_topic, PING_SCHEMA), (out_topic, PONG_SCHEMA)):
        (root / topic).mkdir(parents=True, exist_ok=True)
        (root / topic / f"{schema['name']}.avsc").write_text(json.dumps(schema, indent=2))
    return root


def echo(event: Ping, ctx: Context) -> Pong:
    """Ping → Pong, optionally slowed down by ``ECHO_DELAY_MS`` (for kill-mid-stream tests)."""
    delay_ms = float(os.environ.get("ECHO_DELAY_MS", "0"))
    if delay_ms:
        time.sleep(delay_ms / 1000)
    return Pong(key=event.key, seq=event.seq)


def make_echo_service(name: str) -> Service:
    echo_service = Service(name)
    echo_service.handler(Ping)(echo)
    return echo_service


def apply_once(event: Ping, ctx: Context) -> Pong:
    """Transactional echo: records the application in the service's own table (inbox pattern).

    With ``ECHO_FAIL_FIRST_ATTEMPT=1`` every event fails its first attempt, so all of them go through a
    retry topic; a count of rows per event id > 1 would mean an effect applied twice.
    """
    if os.environ.get("ECHO_FAIL_FIRST_ATTEMPT") == "1" and ctx.attempt == 1:
        raise ConnectionError("first attempt fails")
    delay_ms = float(os.environ.get("ECHO_DELAY_MS", "0"))
    if delay_ms:
        time.sleep(delay_ms / 1000)
    ctx.tx.connection.execute("CREATE TABLE IF NOT EXISTS applied (event_id TEXT, seq INTEGER)")
    ctx.tx.connection.execute("INSERT INTO applied VALUES (?, ?)", (ctx.event_id, event.seq))
    return Pong(key=event.key, seq=event.seq)


def make_tx_service(name: str) -> Service:
    from choreo.retry import RetryPolicy

    tx = Service(name, retry=RetryPolicy(delays=(1.0,), jitter=0.0))
    tx.handler(Ping, transactional=True)(apply_once)
    return tx


service = make_echo_service(os.environ.get("ECHO_SERVICE_NAME", "echo"))
tx_service = make_tx_service(os.environ.get("ECHO_SERVICE_NAME", "echo"))
