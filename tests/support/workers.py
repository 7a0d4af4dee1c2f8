"""Running a service's Worker (or anything with ``run``/``stop``/``ready``) on a thread for a test,
failing the test if it crashed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from choreo.runtime.worker import Worker
from choreo.service import Service
from choreo.testing.processes import wait_until


class Runnable(Protocol):
    """What :func:`on_thread` runs: ``run()`` blocks until ``stop()`` (called from another thread)."""

    def run(self) -> None: ...

    def stop(self) -> None: ...


R = TypeVar("R", bound=Runnable)


@contextmanager
def on_thread(runner: R, ready: threading.Event, name: str) -> Iterator[R]:
    """``runner.run()`` on a daemon thread until the block ends (then ``runner.stop()``).

    The block starts once ``ready`` is set (partitions assigned); a crash of the runner (at start or
    later) is raised in the test thread, and so is its not stopping within 30 s.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            runner.run()
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    try:
        wait_until(lambda: ready.is_set() or bool(errors), 60, message=f"{name} assigned")
        if errors:
            raise errors[0]
        yield runner
    finally:
        runner.stop()
        thread.join(30)
    assert not thread.is_alive(), f"{name} did not stop within 30 s"
    if errors:
        raise errors[0]


@contextmanager
def running(service: Service, env: Any, **worker_options: Any) -> Iterator[Worker]:
    """Run ``service`` bound to ``env.catalog`` with ``env.settings`` until the block ends.

    Topics (retry, DLQ) exist and partitions are assigned before the block starts; a crash of the
    worker (at start or later) is raised in the test thread.
    """
    worker = Worker(service.bind(env.catalog), env.settings, **worker_options)
    with on_thread(worker, worker.ready, f"worker-{service.name}"):
        yield worker
