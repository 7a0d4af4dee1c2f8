"""The SharedState client against real servers: reads, conditional writes, update() under contention."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from choreo.errors import InfrastructureError, PermanentError, RetryableError
from choreo.kafka.embedded import free_port
from choreo.shared_state import (
    SharedState,
    SharedStateConflict,
    SharedStateDenied,
    SharedStateRejected,
    SharedStateUnavailable,
    shared_state_for,
)
from tests.integration.shared_state.conftest import StateServer, serve


def client(server: StateServer, job: str) -> SharedState:
    return SharedState(server.url, server.token, job)


def test_get_create_replace(state_server: StateServer, new_job: Callable[[], str]) -> None:
    state = client(state_server, new_job())
    assert state.get() is None
    etag = state.create({"a": 1})
    assert state.get() == ({"a": 1}, etag)
    with pytest.raises(SharedStateConflict):
        state.create({"a": 2})
    newer = state.replace({"a": 2}, etag)
    assert newer != etag and state.get() == ({"a": 2}, newer)
    with pytest.raises(SharedStateConflict):
        state.replace({"a": 3}, etag)  # stale
    assert state.get() == ({"a": 2}, newer)


def test_update_creates_then_changes_and_skips_a_no_op(state_server: StateServer, new_job: Callable[[], str]) -> None:
    state = client(state_server, new_job())
    seen: list[object] = []

    def set_city(current: dict[str, object] | None) -> dict[str, object]:
        seen.append(current)
        return {**(current or {}), "city": "Oslo"}

    assert state.update(set_city) == {"city": "Oslo"}
    found = state.get()
    assert found is not None
    assert state.update(set_city) == {"city": "Oslo"}  # same value again: nothing written
    assert state.get() == found and seen == [None, {"city": "Oslo"}]


def test_update_gives_up_with_a_retryable_conflict(state_server: StateServer, new_job: Callable[[], str]) -> None:
    job = new_job()
    state, rival = client(state_server, job), client(state_server, job)
    rival.create({"n": 0})
    rounds = 0

    def always_overtaken(current: dict[str, int] | None) -> dict[str, int]:
        nonlocal rounds
        rounds += 1
        rival.update(lambda c: {"n": (c or {"n": 0})["n"] + 100})  # lands between our read and our write
        return {"n": -1}

    with pytest.raises(SharedStateConflict) as caught:
        state.update(always_overtaken, attempts=3)
    assert isinstance(caught.value, RetryableError) and rounds == 3
    assert state.get()[0] == {"n": 300}  # type: ignore[index]


def test_two_concurrent_writers_on_two_servers_lose_no_update(state_server: StateServer,
                                                              new_job: Callable[[], str]) -> None:
    """Each writer goes through its own server (own process-level lock and connection) to the same
    store: only the database's compare-and-set keeps the updates apart."""
    job, per_writer = new_job(), 40
    with serve(state_server.settings) as second_url:
        writers = {"a": SharedState(state_server.url, state_server.token, job, http=httpx.Client()),
                   "b": SharedState(second_url, state_server.token, job, http=httpx.Client())}
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def write(name: str) -> None:
            try:
                start.wait()
                for _ in range(per_writer):
                    writers[name].update(lambda c, n=name: {
                        "count": (c or {}).get("count", 0) + 1,
                        n: (c or {}).get(n, 0) + 1,
                        **{k: v for k, v in (c or {}).items() if k not in ("count", n)}}, attempts=100)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(name,)) for name in writers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
    found = client(state_server, job).get()
    assert found is not None
    assert found[0] == {"count": 2 * per_writer, "a": per_writer, "b": per_writer}
    assert found[1].startswith(f'"{2 * per_writer}-')  # one version per write, none lost


def test_unreachable_is_an_infrastructure_error(new_job: Callable[[], str]) -> None:
    state = SharedState(f"http://127.0.0.1:{free_port()}", "t", new_job())
    for call in (state.get, lambda: state.create({}), lambda: state.update(lambda c: {"x": 1})):
        with pytest.raises(SharedStateUnavailable) as caught:
            call()
        assert isinstance(caught.value, InfrastructureError)


def test_a_wrong_token_is_denied_permanently(state_server: StateServer, new_job: Callable[[], str]) -> None:
    state = SharedState(state_server.url, "not-the-token", new_job())
    with pytest.raises(SharedStateDenied) as caught:
        state.get()
    assert isinstance(caught.value, PermanentError)
    with pytest.raises(SharedStateDenied):
        state.update(lambda c: {"x": 1})


def test_a_value_too_large_is_rejected(state_server: StateServer, new_job: Callable[[], str]) -> None:
    with pytest.raises(SharedStateRejected) as caught:
        client(state_server, new_job()).create({"pad": "x" * 70_000})
    assert caught.value.status == 413 and isinstance(caught.value, PermanentError)


def test_shared_state_for_uses_the_settings(state_server: StateServer, tmp_path: Path,
                                            new_job: Callable[[], str]) -> None:
    settings = state_server.settings.model_copy(update={"progress_url": state_server.url + "/"})
    state = shared_state_for(settings, new_job())
    state.create({"ok": True})
    assert state.get()[0] == {"ok": True}  # type: ignore[index]
