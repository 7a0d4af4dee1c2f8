"""Publishing from many request threads, acknowledged together: one flush covers every waiting caller.

An HTTP API that publishes a job's root event must answer only once the broker acknowledged it. With one
producer and a lock around ``publish(..., wait=True)``, every request waits a broker round trip of its
own (~10 ms here), and the API tops out near 90 requests/s whatever the concurrency. Here each caller
queues its event (a fast, locked ``produce``) and then waits for a flush that started after it queued;
the first caller to find no flush running runs one for everybody (group commit, leader/follower).

Contract: :meth:`GroupPublisher.publish` returns once the event is acknowledged, or raises the flush's
``ProduceError`` — for every caller whose event was queued before that flush began (a failure is
reported to all of them, even those whose record did land: they may retry, and the deterministic or
checked ids downstream keep that safe). Thread-safe.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from choreo.envelope import Envelope
    from choreo.events import Event
    from choreo.publisher import Publisher


class GroupPublisher:
    """Wraps a :class:`~choreo.publisher.Publisher` for concurrent callers (see the module docstring)."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._produce_lock = threading.Lock()  # Publisher.publish is one thread at a time
        self._cond = threading.Condition()
        self._queued = 0  # tickets handed out: one per queued event
        self._acked = 0  # every ticket up to this one has had its flush
        self._flushing = False
        self._failures: deque[tuple[int, int, Exception]] = deque(maxlen=64)  # (first, last, error)

    def publish(self, event: Event, *, correlation_id: str | None = None) -> Envelope:
        with self._produce_lock:
            envelope = self._publisher.publish(event, correlation_id=correlation_id)
            with self._cond:
                self._queued += 1
                ticket = self._queued
        self._wait_for_flush(ticket)
        return envelope

    def _wait_for_flush(self, ticket: int) -> None:
        with self._cond:
            while self._acked < ticket:
                if self._flushing:
                    self._cond.wait()
                    continue
                self._flushing = True
                first, last = self._acked + 1, self._queued
                self._cond.release()
                error: Exception | None = None
                try:
                    self._publisher.flush()  # librdkafka's flush is thread-safe beside produce()
                except Exception as exc:  # noqa: BLE001 - handed to every caller it covered
                    error = exc
                finally:
                    self._cond.acquire()
                    self._flushing, self._acked = False, last
                    if error is not None:
                        self._failures.append((first, last, error))
                    self._cond.notify_all()
            for first, last, error in self._failures:
                if first <= ticket <= last:
                    raise error
