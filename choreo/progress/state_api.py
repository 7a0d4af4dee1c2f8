"""The shared-state resource of a job (SPEC §5): ``GET/PUT /jobs/{job_id}/state``.

One JSON object per job, for the job's services to share (the shop's ``order`` writes the delivery
details, ``shipping`` reads them). Contract:

- **Auth.** Every request needs ``Authorization: Bearer <CHOREO_SERVICE_TOKEN>``: none (or another
  scheme) → ``401`` with ``WWW-Authenticate: Bearer``; a wrong token → ``403`` (compared with
  ``hmac.compare_digest``). The customer holds the job id (it is in ``Location``), so the id alone opens
  nothing. With no token configured the resource is off and refuses every request with ``403``
  (``shared-state-disabled``): failing closed, and a 4xx because no retry fixes a missing setting
  (``choreo dev`` always sets one). Checked before anything else, so a refusal tells nothing about the job.
- **GET** → ``200`` with the object, ``404`` when the job has no state; ``304`` when ``If-None-Match``
  names the current ETag.
- **PUT** replaces the whole object (values are absolute: no patch, no deltas). ``If-None-Match: *``
  creates (``201``; ``412`` if state exists); ``If-Match: <etag>`` updates (``200``; ``412`` when the ETag
  is stale or the job has no state); neither → ``428``. ``If-Match: *`` is refused with ``428`` too: it
  would overwrite blindly, the lost update this resource exists to prevent. ETags compare strongly.
- **Bodies**: a JSON object of at most 64 KiB (``413`` beyond, declared or streamed); anything else
  (bad JSON, NaN, not UTF-8, an array, nesting too deep) → ``422``. Errors are ``{"error", "detail"}``.
  Bad input never answers 5xx; only the store being down does (``503``).
- **ETag on every answer**, strong: ``"<version>-<sha256 prefix>"`` of the stored object. Answers where
  the caller sees no state carry ``"0"`` (version 0 = no state): a 404, a 412 over no state, and every
  401/403 — so a refused caller learns nothing, not even whether the state exists or changed.
- ``Cache-Control: no-store``: the object may hold personal data (a delivery address).

**Atomicity.** An update is one ``UPDATE … WHERE job_id = ? AND version = ? AND digest = ?`` in one
transaction (a compare-and-set): of two writers holding the same ETag exactly one succeeds, the other
gets 412 — on SQLite (the write lock) and on PostgreSQL (the row lock; READ COMMITTED re-checks the
WHERE after waiting), across processes too. A create is ``INSERT … ON CONFLICT DO NOTHING``.

**Storage.** Table ``progress_shared_state`` in the store ``open_store(settings, "progress")`` (the
progress service's store: same SQLite file or PostgreSQL database), on a connection of its own, opened
and its table created (``CREATE TABLE IF NOT EXISTS``) on first use. Requests run on uvicorn's threads;
the one connection is used under a lock (a store is not safe for concurrent use).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from choreo.config import Settings
from choreo.idempotency import IdempotencyStore, open_store
from choreo.retry.headers import now_ms
from choreo.runtime.tables import DDL_LOCK
from choreo.state import execute, fetchone

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
STORE_NAME = "progress"  # the progress service's store: its tables are all prefixed progress_
NO_STATE_ETAG = '"0"'  # version 0: what a caller that sees no state gets
MAX_JOB_ID = 200
STATE_DDL = """CREATE TABLE IF NOT EXISTS progress_shared_state (
    job_id     TEXT   PRIMARY KEY,
    version    BIGINT NOT NULL,      -- 1 at creation, +1 per update
    digest     TEXT   NOT NULL,      -- sha256 prefix of value: the ETag is "<version>-<digest>"
    value      TEXT   NOT NULL,      -- the object as canonical JSON (ASCII: PostgreSQL TEXT takes no NUL)
    updated_at BIGINT NOT NULL       -- epoch ms, UTC
)"""
_JOB_ID = re.compile(rf"^[A-Za-z0-9._:~-]{{1,{MAX_JOB_ID}}}$")
_BASE_HEADERS = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class StoredState:
    """One job's state as stored: canonical JSON text, its version and digest."""

    text: str
    version: int
    digest: str

    @property
    def etag(self) -> str:
        return f'"{self.version}-{self.digest}"'


def canonical(value: dict[str, Any]) -> tuple[str, str]:
    """(canonical JSON text, digest): sorted keys, no spaces, ASCII, so equal objects hash equal."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text, hashlib.sha256(text.encode()).hexdigest()[:16]


class StateTable:
    """``progress_shared_state`` on one store connection, used under a lock (thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store: IdempotencyStore | None = None
        self._lock = threading.Lock()

    @contextmanager
    def _tx(self, *, read_only: bool = False) -> Iterator[Any]:
        with self._lock:
            if self._store is None:
                store = open_store(self._settings, STORE_NAME)
                with store.transaction(STORE_NAME) as tx:
                    if tx.dialect == "postgresql":  # concurrent CREATE TABLE races on PostgreSQL's catalog
                        execute(tx, DDL_LOCK)
                    execute(tx, STATE_DDL)
                self._store = store
            unit = getattr(self._store, "read", None) if read_only else None
            with (unit or self._store.transaction)(STORE_NAME) as tx:
                yield tx

    def get(self, job_id: str) -> StoredState | None:
        with self._tx(read_only=True) as tx:
            row = fetchone(tx, "SELECT value, version, digest FROM progress_shared_state WHERE job_id = ?",
                           (job_id,))
        return None if row is None else StoredState(str(row[0]), int(row[1]), str(row[2]))

    def create(self, job_id: str, text: str, digest: str) -> StoredState | None:
        """The new state, or None if the job has state already (nothing written)."""
        with self._tx() as tx:
            cursor = execute(tx, "INSERT INTO progress_shared_state (job_id, version, digest, value, updated_at)"
                                 " VALUES (?, 1, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING",
                             (job_id, digest, text, now_ms()))
            return StoredState(text, 1, digest) if cursor.rowcount == 1 else None

    def replace(self, job_id: str, expected: StoredState, text: str, digest: str) -> StoredState | None:
        """Compare-and-set: the new state if ``expected`` is still current, else None (nothing written)."""
        with self._tx() as tx:
            cursor = execute(tx, "UPDATE progress_shared_state SET version = version + 1, digest = ?, value = ?,"
                                 " updated_at = ? WHERE job_id = ? AND version = ? AND digest = ?",
                             (digest, text, now_ms(), job_id, expected.version, expected.digest))
            return StoredState(text, expected.version + 1, digest) if cursor.rowcount == 1 else None

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


class Refused(Exception):
    """An answer other than success, raised inside a request and turned into a JSON error."""

    def __init__(self, status: int, error: str, detail: str, etag: str = NO_STATE_ETAG,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.etag, self.headers = status, error, detail, etag, headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error, "detail": self.detail}, self.status,
                            headers={**_BASE_HEADERS, "ETag": self.etag, **self.headers})


def authorize(request: Request, token: str | None) -> None:
    """Raise 403 when the resource is off, 401 without a bearer token, 403 with a wrong one."""
    if not token:
        raise Refused(403, "shared-state-disabled", "shared state is off: the server has no CHOREO_SERVICE_TOKEN")
    scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Refused(401, "unauthorized", "send Authorization: Bearer <CHOREO_SERVICE_TOKEN>",
                      headers={"WWW-Authenticate": 'Bearer realm="choreo"'})
    # Starlette decodes header bytes as latin-1: encode back to the bytes that were sent.
    if not hmac.compare_digest(given.strip().encode("latin-1"), token.encode("utf-8")):
        raise Refused(403, "forbidden", "the bearer token is not this deployment's service token")


def check_job_id(job_id: str) -> None:
    if not _JOB_ID.fullmatch(job_id):
        raise Refused(422, "invalid-job-id", f"a job id is 1-{MAX_JOB_ID} of A-Z a-z 0-9 . _ : ~ -")


def etags(header: str) -> list[str]:
    """The entity tags of an If-Match / If-None-Match value (weak ones kept with their W/)."""
    return [part.strip() for part in header.split(",") if part.strip()]


async def read_object(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The body as a JSON object: 413 beyond ``limit`` bytes (declared or streamed), else 422 unless an object."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, "body-too-large", f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, "body-too-large", f"request body over {limit} bytes")
        chunks.append(chunk)
    try:
        value = json.loads(b"".join(chunks).decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Refused(422, "invalid-json", f"the body is not JSON: {type(exc).__name__}") from None
    if not isinstance(value, dict):
        raise Refused(422, "not-an-object", f"the state is a JSON object, not {type(value).__name__}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class SharedStateResource:
    """The two operations, on a :class:`StateTable`; each raises :class:`Refused` for a non-2xx answer."""

    def __init__(self, settings: Settings, table: StateTable | None = None) -> None:
        self.token = settings.service_token
        self.table = table or StateTable(settings)

    def _current_etag(self, job_id: str) -> str:
        current = self.table.get(job_id)
        return NO_STATE_ETAG if current is None else current.etag

    async def get(self, request: Request, job_id: str) -> Response:
        authorize(request, self.token)
        check_job_id(job_id)
        current = await run_in_threadpool(self.table.get, job_id)
        if current is None:
            raise Refused(404, "no-state", "this job has no shared state")
        headers = {**_BASE_HEADERS, "ETag": current.etag}
        if current.etag in etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        return Response(current.text, 200, headers=headers, media_type="application/json")

    async def put(self, request: Request, job_id: str) -> Response:
        authorize(request, self.token)
        check_job_id(job_id)
        if_match = request.headers.get("if-match")
        create = request.headers.get("if-none-match", "").strip() == "*"
        if (if_match is None and not create) or (if_match is not None and if_match.strip() == "*"):
            raise Refused(428, "precondition-required",
                          "send If-None-Match: * to create, or If-Match: <the ETag you read> to update",
                          await run_in_threadpool(self._current_etag, job_id))
        try:
            value = await read_object(request)
        except Refused as refused:
            refused.etag = await run_in_threadpool(self._current_etag, job_id)
            raise
        text, digest = canonical(value)
        stored = await run_in_threadpool(self._write, job_id, if_match, create, text, digest)
        return Response(stored.text, 201 if stored.version == 1 else 200, media_type="application/json",
                        headers={**_BASE_HEADERS, "ETag": stored.etag})

    def _write(self, job_id: str, if_match: str | None, create: bool, text: str, digest: str) -> StoredState:
        """Create or compare-and-set; 412 (with the current ETag) when the precondition fails."""
        current = self.table.get(job_id)
        if if_match is not None:
            # If-Match is evaluated first (RFC 9110 §13.2.2); with If-None-Match: * as well it cannot hold.
            if current is None:
                raise Refused(412, "no-state", "If-Match, but this job has no shared state: create it first")
            if current.etag not in etags(if_match) or create:
                raise Refused(412, "stale", "the state changed since you read it: read it again", current.etag)
            stored = self.table.replace(job_id, current, text, digest)
        else:
            if current is not None:
                raise Refused(412, "exists", "this job has shared state already: update it with If-Match",
                              current.etag)
            stored = self.table.create(job_id, text, digest)
        if stored is None:  # another writer won between the read and the write: the precondition failed
            raise Refused(412, "stale", "the state changed meanwhile: read it again", self._current_etag(job_id))
        return stored


def add_shared_state_routes(app: FastAPI, settings: Settings) -> None:
    """Add ``GET/PUT /jobs/{job_id}/state`` to ``app``; the table is ``app.state.shared_state_table``
    (close it on shutdown)."""
    resource = SharedStateResource(settings)
    app.state.shared_state_table = resource.table
    common = {401: {"description": "no bearer token"}, 403: {"description": "wrong token, or shared state off"},
              422: {"description": "bad job id or body"}, 503: {"description": "store unavailable"}}

    async def answer(work: Any) -> Response:
        try:
            return await work
        except Refused as refused:
            return refused.response()
        except Exception:  # noqa: BLE001 - the store's trouble: a JSON 503, never a traceback
            log.exception("shared state store failed")
            return JSONResponse({"error": "unavailable", "detail": "shared state store unavailable, retry later"},
                                503, headers={**_BASE_HEADERS, "ETag": NO_STATE_ETAG, "Retry-After": "1"})

    @app.get("/jobs/{job_id}/state", tags=["shared state"],
             responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}},
                        304: {"description": "not modified"}, 404: {"description": "no state"}, **common})
    async def get_state(job_id: str, request: Request) -> Response:
        """The job's shared state (services only: bearer token)."""
        return await answer(resource.get(request, job_id))

    @app.put("/jobs/{job_id}/state", tags=["shared state"],
             responses={201: {"description": "created"}, 412: {"description": "precondition failed"},
                        413: {"description": "body over 64 KiB"}, 428: {"description": "precondition required"},
                        **common},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "object"}}}}})
    async def put_state(job_id: str, request: Request) -> Response:
        """Create (If-None-Match: *) or replace (If-Match: <etag>) the job's shared state."""
        return await answer(resource.put(request, job_id))


def create_state_app(settings: Settings) -> FastAPI:
    """A standalone app serving only the shared-state routes (tests, or running it apart)."""
    app = FastAPI(title="choreo shared state", version="1", description=__doc__)
    add_shared_state_routes(app, settings)
    return app
