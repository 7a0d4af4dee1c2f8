"""Running a service's Worker on a thread for a test, failing the test if it crashed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from choreo.runtime.worker import Worker
from choreo.service import Service
from choreo.testing.processes import wait_until


@contextmanager
def running(service: Service, env: Any, **worker_options: Any) -> Iterator[Worker]:
    """Run ``service`` bound to ``env.catalog`` with ``env.settings`` until the block ends.

    Topics (retry, DLQ) exist and partitions are assigned before the block starts; a crash of the
    worker (at start or later) is raised in the test thread.
    """
    worker = Worker(service.bind(env.catalog), env.settings, **worker_options)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"worker-{service.name}", daemon=True)
    thread.start()
    try:
        wait_until(lambda: worker.ready.is_set() or bool(errors), 60, message=f"{service.name} assigned")
        if errors:
            raise errors[0]
        yield worker
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive(), "worker did not stop within 30 s"
    if errors:
        raise errors[0]
