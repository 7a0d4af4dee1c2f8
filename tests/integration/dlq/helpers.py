"""A service that fails until told it is fixed, and polling helpers over its DLQ and outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Message

from choreo import Context, PermanentError, Service
from choreo.config import Settings
from choreo.retry import RetryPolicy
from choreo.retry.dlq import DeadLetter, read_dead_letters
from choreo.testing.processes import wait_until
from tests.integration.runtime.conftest import EchoEnv
from tests.support.echo import Ping, Pong
from tests.support.kafka import read_all

# One quick retry: a plain exception is dead-lettered as retries-exhausted after ~0.1 s.
QUICK = RetryPolicy(delays=(0.1,), jitter=0.0)


@dataclass
class Breakable:
    """Handler switch: keys in ``broken`` (or every key while ``all_broken``) fail with their error."""

    all_broken: bool = True
    broken: dict[str, type[Exception]] = field(default_factory=dict)
    error: type[Exception] = PermanentError
    calls: list[tuple[str, int]] = field(default_factory=list)

    def service(self, name: str, *, ordered_retries: bool = False) -> Service:
        service = Service(name, retry=QUICK, ordered_retries=ordered_retries)

        @service.handler(Ping)
        def handle(event: Ping, ctx: Context) -> Pong:
            self.calls.append((event.key, ctx.attempt))
            error = self.broken.get(event.key) or (self.error if self.all_broken else None)
            if error is not None:
                raise error(f"cannot handle {event.key}")
            return Pong(key=event.key, seq=event.seq)

        return service


def wait_dead_letters(settings: Settings, service: str, count: int,
                      condition: Callable[[list[DeadLetter]], bool] | None = None,
                      timeout_s: float = 30) -> list[DeadLetter]:
    """Poll ``<service>.dlq`` (read to the end each time) until it holds ``count`` records."""
    found: list[DeadLetter] = []

    def enough() -> bool:
        found[:] = read_dead_letters(settings, service)
        return len(found) >= count and (condition is None or condition(found))

    wait_until(enough, timeout_s, interval_s=0.2, message=f"{count} dead letters in {service}.dlq")
    return found


def causations(messages: list[Message]) -> list[str]:
    return [dict(m.headers() or [])["causation-id"].decode() for m in messages]


def wait_outputs(env: EchoEnv, count: int, timeout_s: float = 30) -> list[Message]:
    found: list[Message] = []

    def enough() -> bool:
        found[:] = read_all(env.settings, env.out_topic)
        return len(found) >= count

    wait_until(enough, timeout_s, interval_s=0.2, message=f"{count} outputs on {env.out_topic}")
    return found
