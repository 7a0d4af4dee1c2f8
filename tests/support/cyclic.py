"""Two user services that feed each other (Ping → Pong → Ping): a cycle nobody declared intended."""

from __future__ import annotations

from collections.abc import Iterator

from choreo import Context, Service
from tests.support.echo import Ping, Pong

pinger = Service("pinger")
ponger = Service("ponger")


@pinger.handler(Ping)
def ping(event: Ping, ctx: Context) -> Pong | None:
    return Pong(key=event.key, seq=event.seq)


@ponger.handler(Pong)
def pong(event: Pong, ctx: Context) -> Iterator[Ping]:
    yield Ping(key=event.key, seq=event.seq + 1)
