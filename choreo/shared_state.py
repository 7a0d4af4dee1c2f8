"""The client of a job's shared-state resource (SPEC §5, served by :mod:`choreo.progress.state_api`).

    state = shared_state_for(get_settings(), ctx.correlation_id)
    state.update(lambda current: {**(current or {}), "delivery": delivery})   # absolute values only
    found = state.get()                                                        # (object, etag) | None

Contract:

- :meth:`SharedState.update` is the lost-update-free read-modify-write: read, apply ``fn``, PUT with
  ``If-None-Match: *`` (no state yet) or ``If-Match: <etag>``; on ``412`` (another writer came first)
  read again and re-apply ``fn``, up to ``attempts`` times. ``fn`` may run several times, so it must be
  a pure function of what it is given (set absolute values; never add deltas to an outside counter).
  Two processes updating one job concurrently both land: the server's compare-and-set lets one win
  each round and the other re-reads. ``fn`` returning what it got writes nothing.
- Errors are typed for the runtime's routing: the resource unreachable, timing out or answering 5xx →
  :class:`SharedStateUnavailable` (an ``InfrastructureError``: the runtime re-runs the batch later);
  contention beyond ``attempts`` → :class:`SharedStateConflict` (a ``RetryableError``); ``401``/``403``
  → :class:`SharedStateDenied` and other refusals (a body too large, not an object) →
  :class:`SharedStateRejected` (both ``PermanentError``: no retry fixes a wrong token or a bad value).
- Thread-safety: a :class:`SharedState` is cheap (one per job and call site); the ``httpx.Client``
  under it is thread-safe and shared process-wide by :func:`shared_state_for`.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from choreo.config import Settings
from choreo.errors import ChoreoError, ConfigError, InfrastructureError, PermanentError, RetryableError

DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)

State = dict[str, Any]


class SharedStateError(ChoreoError):
    """Root of the shared-state client's errors."""


class SharedStateUnavailable(SharedStateError, InfrastructureError):
    """The resource could not be reached, timed out or answered 5xx: try again later."""


class SharedStateConflict(SharedStateError, RetryableError):
    """A conditional PUT lost (``412``): to another writer, or ``update`` ran out of attempts."""


class SharedStateDenied(SharedStateError, PermanentError):
    """``401``/``403``: no, a wrong, or an unconfigured service token."""


class SharedStateRejected(SharedStateError, PermanentError):
    """The resource refused the request itself (``413``, ``422``, ``428``, …)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class SharedStateNotConfigured(SharedStateError, ConfigError):
    """No ``CHOREO_SERVICE_TOKEN``: the resource would refuse every request."""


class SharedState:
    """One job's shared state at ``<base_url>/jobs/<job_id>/state``, with the services' bearer token."""

    def __init__(self, base_url: str, token: str, job_id: str, http: httpx.Client | None = None) -> None:
        self.url = f"{base_url.rstrip('/')}/jobs/{quote(job_id, safe='')}/state"
        self.job_id = job_id
        self._auth = {"Authorization": f"Bearer {token}"}
        self._http = http or shared_http()

    def _send(self, method: str, headers: dict[str, str], body: State | None = None) -> httpx.Response:
        try:
            response = self._http.request(method, self.url, json=body, headers={**self._auth, **headers})
        except httpx.HTTPError as exc:  # connect refused, timeout, reset: the resource's trouble
            raise SharedStateUnavailable(f"shared state of job {self.job_id} unreachable: {exc!r}") from exc
        if response.status_code >= 500:
            raise SharedStateUnavailable(f"shared state of job {self.job_id}: {response.status_code}")
        if response.status_code in (401, 403):
            raise SharedStateDenied(f"shared state of job {self.job_id} refused the service token "
                                    f"({response.status_code}): {_detail(response)}")
        return response

    def get(self) -> tuple[State, str] | None:
        """(object, etag), or None when the job has no state."""
        response = self._send("GET", {})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise SharedStateRejected(f"GET shared state: {response.status_code} {_detail(response)}",
                                      response.status_code)
        return response.json(), response.headers["etag"]

    def create(self, value: State) -> str:
        """Create the job's state (``If-None-Match: *``); its ETag. SharedStateConflict if it exists."""
        return self._put(value, {"If-None-Match": "*"})

    def replace(self, value: State, etag: str) -> str:
        """Replace the state read as ``etag`` (``If-Match``); the new ETag. SharedStateConflict if stale."""
        return self._put(value, {"If-Match": etag})

    def _put(self, value: State, headers: dict[str, str]) -> str:
        if not isinstance(value, dict):
            raise TypeError(f"shared state is a JSON object (a dict), not {type(value).__name__}")
        response = self._send("PUT", headers, value)
        if response.status_code == 412:
            raise SharedStateConflict(f"shared state of job {self.job_id} changed meanwhile: {_detail(response)}")
        if response.status_code not in (200, 201):
            raise SharedStateRejected(f"PUT shared state: {response.status_code} {_detail(response)}",
                                      response.status_code)
        return response.headers["etag"]

    def update(self, fn: Callable[[State | None], State], attempts: int = 5) -> State:
        """Read, apply ``fn`` (to a copy; None when there is no state), write conditionally; on 412 read
        again. Returns what was written (or found unchanged). SharedStateConflict after ``attempts``."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        for attempt in range(attempts):
            found = self.get()
            current = None if found is None else found[0]
            value = fn(copy.deepcopy(current))
            if current is not None and value == current:
                return value  # nothing to change: a re-run of an update that already landed writes nothing
            try:
                if found is None:
                    self.create(value)
                else:
                    self.replace(value, found[1])
                return value
            except SharedStateConflict:
                # Lost to another writer: back off a little (random, so two losers do not collide again).
                time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise SharedStateConflict(f"shared state of job {self.job_id}: {attempts} conflicting writes in a row")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)[:200]


_http: httpx.Client | None = None
_http_lock = threading.Lock()


def shared_http() -> httpx.Client:
    """The process-wide HTTP client (connection pooling; httpx clients are thread-safe)."""
    global _http
    with _http_lock:
        if _http is None:
            _http = httpx.Client(timeout=DEFAULT_TIMEOUT)
        return _http


def state_base_url(settings: Settings) -> str:
    """The progress service's base URL: ``CHOREO_PROGRESS_URL``, else 127.0.0.1 on ``CHOREO_PROGRESS_PORT``."""
    return settings.progress_url or f"http://127.0.0.1:{settings.progress_port}"


def shared_state_for(settings: Settings, job_id: str) -> SharedState:
    """The shared state of ``job_id`` (a handler passes ``ctx.correlation_id``) with the settings' token.

    Raises :class:`SharedStateNotConfigured` without ``CHOREO_SERVICE_TOKEN``.
    """
    if not settings.service_token:
        raise SharedStateNotConfigured("shared state needs CHOREO_SERVICE_TOKEN (choreo dev sets one)")
    return SharedState(state_base_url(settings), settings.service_token, job_id)


_warned_off = False


def optional_shared_state(settings: Settings, job_id: str) -> SharedState | None:
    """:func:`shared_state_for`, or None (warned once per process) when no service token is configured:
    for callers that can do without (the shop ships with defaults), since the resource would refuse
    every request and retrying could never help."""
    global _warned_off
    if not settings.service_token:
        if not _warned_off:
            _warned_off = True
            logging.getLogger(__name__).warning("shared state is off: no CHOREO_SERVICE_TOKEN is set")
        return None
    return shared_state_for(settings, job_id)
