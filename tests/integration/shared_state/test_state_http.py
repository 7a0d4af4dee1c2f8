"""The shared-state resource's HTTP semantics (SPEC §5) against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from choreo.progress.state_api import MAX_BODY_BYTES, NO_STATE_ETAG
from tests.integration.shared_state.conftest import StateServer, serve, settings_for

STRONG_ETAG = re.compile(r'^"[1-9]\d*-[0-9a-f]{16}"$')
DELIVERY = {"delivery": {"name": "Ada", "street": "1 Loop Rd", "city": "Cambridge", "postcode": "CB1",
                         "country": "GB"}}


def create(server: StateServer, job: str, value: object = DELIVERY) -> httpx.Response:
    return httpx.put(server.state_url(job), json=value, headers={**server.auth, "If-None-Match": "*"})


def test_create_then_read_then_update_with_an_etag_on_every_answer(state_server: StateServer,
                                                                   new_job: Callable[[], str]) -> None:
    job = new_job()
    created = create(state_server, job)
    assert created.status_code == 201, created.text
    assert STRONG_ETAG.match(created.headers["etag"]) and created.json() == DELIVERY
    assert created.headers["cache-control"] == "no-store"

    read = httpx.get(state_server.state_url(job), headers=state_server.auth)
    assert read.status_code == 200 and read.json() == DELIVERY
    assert read.headers["etag"] == created.headers["etag"]
    assert read.headers["content-type"].startswith("application/json")

    changed = {"delivery": {**DELIVERY["delivery"], "city": "Oxford"}}  # absolute: the whole object
    updated = httpx.put(state_server.state_url(job), json=changed,
                        headers={**state_server.auth, "If-Match": read.headers["etag"]})
    assert updated.status_code == 200, updated.text
    assert STRONG_ETAG.match(updated.headers["etag"]) and updated.headers["etag"] != read.headers["etag"]
    assert httpx.get(state_server.state_url(job), headers=state_server.auth).json() == changed

    # Replacing with fewer keys drops the others: no merge, no patch.
    smaller = httpx.put(state_server.state_url(job), json={"note": "x"},
                        headers={**state_server.auth, "If-Match": updated.headers["etag"]})
    assert smaller.status_code == 200
    assert httpx.get(state_server.state_url(job), headers=state_server.auth).json() == {"note": "x"}


def test_get_with_the_current_etag_is_304(state_server: StateServer, new_job: Callable[[], str]) -> None:
    job = new_job()
    etag = create(state_server, job).headers["etag"]
    again = httpx.get(state_server.state_url(job), headers={**state_server.auth, "If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and again.content == b""


def test_no_state_is_404_with_the_no_state_etag(state_server: StateServer, new_job: Callable[[], str]) -> None:
    response = httpx.get(state_server.state_url(new_job()), headers=state_server.auth)
    assert response.status_code == 404
    assert response.json()["error"] == "no-state" and response.headers["etag"] == NO_STATE_ETAG


def test_creating_over_existing_state_is_412_and_changes_nothing(state_server: StateServer,
                                                                new_job: Callable[[], str]) -> None:
    job = new_job()
    etag = create(state_server, job).headers["etag"]
    again = create(state_server, job, {"other": 1})
    assert again.status_code == 412 and again.json()["error"] == "exists"
    assert again.headers["etag"] == etag  # the current one, so the writer knows it lost
    assert httpx.get(state_server.state_url(job), headers=state_server.auth).json() == DELIVERY


def test_a_stale_if_match_is_412(state_server: StateServer, new_job: Callable[[], str]) -> None:
    job = new_job()
    first = create(state_server, job).headers["etag"]
    second = httpx.put(state_server.state_url(job), json={"v": 2},
                       headers={**state_server.auth, "If-Match": first}).headers["etag"]
    stale = httpx.put(state_server.state_url(job), json={"v": 3}, headers={**state_server.auth, "If-Match": first})
    assert stale.status_code == 412 and stale.json()["error"] == "stale" and stale.headers["etag"] == second
    weak = httpx.put(state_server.state_url(job), json={"v": 3},
                     headers={**state_server.auth, "If-Match": f"W/{second}"})
    assert weak.status_code == 412  # strong comparison: a weak tag never matches
    listed = httpx.put(state_server.state_url(job), json={"v": 3},
                       headers={**state_server.auth, "If-Match": f'"9-0000000000000000", {second}'})
    assert listed.status_code == 200  # any tag of the list may match
    assert httpx.get(state_server.state_url(job), headers=state_server.auth).json() == {"v": 3}


def test_if_match_without_state_is_412(state_server: StateServer, new_job: Callable[[], str]) -> None:
    job = new_job()
    response = httpx.put(state_server.state_url(job), json={"v": 1},
                         headers={**state_server.auth, "If-Match": '"1-0000000000000000"'})
    assert response.status_code == 412 and response.headers["etag"] == NO_STATE_ETAG
    assert httpx.get(state_server.state_url(job), headers=state_server.auth).status_code == 404


@pytest.mark.parametrize("headers", [{}, {"If-Match": "*"}, {"If-None-Match": '"1-0000000000000000"'}],
                         ids=["neither", "if-match-star", "if-none-match-tag"])
def test_a_put_without_a_usable_precondition_is_428(state_server: StateServer, new_job: Callable[[], str],
                                                    headers: dict[str, str]) -> None:
    job = new_job()
    response = httpx.put(state_server.state_url(job), json={"v": 1}, headers={**state_server.auth, **headers})
    assert response.status_code == 428 and response.json()["error"] == "precondition-required"
    assert response.headers["etag"] == NO_STATE_ETAG
    etag = create(state_server, job).headers["etag"]
    again = httpx.put(state_server.state_url(job), json={"v": 1}, headers={**state_server.auth, **headers})
    assert again.status_code == 428 and again.headers["etag"] == etag
    assert httpx.get(state_server.state_url(job), headers=state_server.auth).json() == DELIVERY


@pytest.mark.parametrize("body", [
    b"{not json", b"", b"\xff\xfe", b"[1, 2]", b"null", b'"text"', b"3", b'{"a": NaN}', b"[" * 20_000,
], ids=["broken", "empty", "not-utf8", "array", "null", "string", "number", "nan", "too-deep"])
def test_a_body_that_is_not_a_json_object_is_422(state_server: StateServer, new_job: Callable[[], str],
                                                 body: bytes) -> None:
    response = httpx.put(state_server.state_url(new_job()), content=body,
                         headers={**state_server.auth, "If-None-Match": "*", "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "detail"} and "etag" in response.headers


def test_a_body_over_64_kib_is_413_declared_or_streamed(state_server: StateServer,
                                                        new_job: Callable[[], str]) -> None:
    big = json.dumps({"pad": "x" * MAX_BODY_BYTES}).encode()
    headers = {**state_server.auth, "If-None-Match": "*"}
    job = new_job()
    assert httpx.put(state_server.state_url(job), content=big, headers=headers).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed size counts
        yield big[: len(big) // 2]
        yield big[len(big) // 2:]

    streamed = httpx.put(state_server.state_url(job), content=chunks(), headers=headers)
    assert streamed.status_code == 413 and streamed.json()["error"] == "body-too-large"
    just_fits = json.dumps({"pad": "x" * (MAX_BODY_BYTES - 20)}).encode()
    assert httpx.put(state_server.state_url(job), content=just_fits, headers=headers).status_code == 201


def test_unicode_and_nul_round_trip(state_server: StateServer, new_job: Callable[[], str]) -> None:
    job = new_job()
    value = {"name": "Zoë \u0000 Ørsted ☃", "nested": {"list": [1, 2.5, None, True]}}
    assert create(state_server, job, value).status_code == 201
    assert httpx.get(state_server.state_url(job), headers=state_server.auth).json() == value


@pytest.mark.parametrize("auth", [None, "Basic dXNlcjpwYXNz", "Bearer", "Token abc"],
                         ids=["none", "basic", "empty", "other-scheme"])
def test_without_a_bearer_token_is_401(state_server: StateServer, new_job: Callable[[], str],
                                       auth: str | None) -> None:
    job = new_job()
    etag = create(state_server, job).headers["etag"]
    headers = {} if auth is None else {"Authorization": auth}
    for response in (httpx.get(state_server.state_url(job), headers=headers),
                     httpx.put(state_server.state_url(job), json={"x": 1}, headers={**headers, "If-Match": etag})):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["etag"] == NO_STATE_ETAG  # says nothing about the job's state
        assert response.json()["error"] == "unauthorized"
    assert httpx.get(state_server.state_url(job), headers=state_server.auth).json() == DELIVERY


@pytest.mark.parametrize("token", ["wrong", "ÿ-latin-1", "x" * 500], ids=["wrong", "latin1", "long"])
def test_a_wrong_token_is_403(state_server: StateServer, new_job: Callable[[], str], token: str) -> None:
    job = new_job()
    etag = create(state_server, job).headers["etag"]
    headers = {"Authorization": f"Bearer {token}".encode("latin-1")}  # type: ignore[dict-item]
    for response in (httpx.get(state_server.state_url(job), headers=headers),
                     httpx.put(state_server.state_url(job), json={"x": 1}, headers={**headers, "If-Match": etag}),
                     httpx.put(state_server.state_url(new_job()), json={"x": 1},
                               headers={**headers, "If-None-Match": "*"})):
        assert response.status_code == 403, response.text
        assert response.headers["etag"] == NO_STATE_ETAG and response.json()["error"] == "forbidden"
    assert httpx.get(state_server.state_url(job), headers=state_server.auth).json() == DELIVERY


def test_a_bad_job_id_is_422(state_server: StateServer) -> None:
    response = httpx.get(state_server.state_url("a" * 300), headers=state_server.auth)
    assert response.status_code == 422 and response.json()["error"] == "invalid-job-id"


def test_without_a_configured_token_everything_is_403(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with serve(settings_for("sqlite", tmp_path, request, token=None)) as url:
        for headers in ({}, {"Authorization": "Bearer anything"}):
            got = httpx.get(f"{url}/jobs/j-1/state", headers=headers)
            put = httpx.put(f"{url}/jobs/j-1/state", json={}, headers={**headers, "If-None-Match": "*"})
            for response in (got, put):
                assert response.status_code == 403 and response.json()["error"] == "shared-state-disabled"


def test_state_survives_a_restart_of_the_server(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    settings = settings_for("sqlite", tmp_path, request, token="t0ken")
    auth = {"Authorization": "Bearer t0ken"}
    with serve(settings) as url:
        etag = httpx.put(f"{url}/jobs/j-1/state", json=DELIVERY, headers={**auth, "If-None-Match": "*"}).headers["etag"]
    with serve(settings) as url:
        again = httpx.get(f"{url}/jobs/j-1/state", headers=auth)
        assert again.json() == DELIVERY and again.headers["etag"] == etag


def test_the_openapi_document_lists_both_routes(state_server: StateServer) -> None:
    paths = httpx.get(f"{state_server.url}/openapi.json").json()["paths"]
    assert set(paths["/jobs/{job_id}/state"]) == {"get", "put"}
