"""Pieces of the shared-state client and resource that need no server."""

from __future__ import annotations

import pytest

from choreo.config import Settings
from choreo.errors import ConfigError, InfrastructureError, PermanentError, RetryableError
from choreo.progress.state_api import canonical, etags
from choreo.shared_state import (
    SharedState,
    SharedStateConflict,
    SharedStateDenied,
    SharedStateError,
    SharedStateNotConfigured,
    SharedStateRejected,
    SharedStateUnavailable,
    shared_state_for,
    state_base_url,
)


def test_without_a_token_there_is_no_shared_state() -> None:
    with pytest.raises(SharedStateNotConfigured) as caught:
        shared_state_for(Settings(service_token=None), "job-1")
    assert isinstance(caught.value, ConfigError)
    with pytest.raises(SharedStateNotConfigured):
        shared_state_for(Settings(service_token=""), "job-1")


def test_the_base_url_defaults_to_the_progress_port() -> None:
    assert state_base_url(Settings(progress_url=None, progress_port=8123)) == "http://127.0.0.1:8123"
    assert state_base_url(Settings(progress_url="http://p.example/x")) == "http://p.example/x"
    state = shared_state_for(Settings(progress_url="http://p.example/x/", service_token="t"), "j/1 ?")
    assert state.url == "http://p.example/x/jobs/j%2F1%20%3F/state"


def test_errors_are_typed_for_the_runtime() -> None:
    assert issubclass(SharedStateUnavailable, InfrastructureError)
    assert issubclass(SharedStateConflict, RetryableError)
    assert issubclass(SharedStateDenied, PermanentError) and issubclass(SharedStateRejected, PermanentError)
    for error in (SharedStateUnavailable, SharedStateConflict, SharedStateDenied, SharedStateRejected,
                  SharedStateNotConfigured):
        assert issubclass(error, SharedStateError)


def test_only_objects_are_written() -> None:
    state = SharedState("http://127.0.0.1:1", "t", "j")
    with pytest.raises(TypeError):
        state.create([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempts"):
        state.update(lambda c: {}, attempts=0)


def test_canonical_text_and_digest_ignore_key_order_and_spacing() -> None:
    text, digest = canonical({"b": 1, "a": "ø\u0000"})
    assert text == '{"a":"\\u00f8\\u0000","b":1}'  # ASCII: PostgreSQL TEXT takes no NUL
    assert canonical({"a": "ø\u0000", "b": 1}) == (text, digest) and len(digest) == 16
    assert canonical({"a": 1})[1] != canonical({"a": 2})[1]


def test_etag_lists_split_and_keep_weak_markers() -> None:
    assert etags('"1-a", W/"2-b" ,"3-c"') == ['"1-a"', 'W/"2-b"', '"3-c"']
    assert etags("") == [] and etags("*") == ["*"]
