"""The progress resource over HTTP (SPEC §5): ``GET /jobs/{job_id}`` and ``GET /jobs?status=&limit=``.

- ``GET /jobs/{job_id}`` → the job's resource (see :mod:`choreo.progress.model`) with ``links``; headers
  ``ETag`` (strong: a hash of the exact body), ``Cache-Control`` (``max-age=1`` until the job is settled —
  terminal with no task unfinished or dead-lettered — then ``max-age=86400``), ``Link`` (``rel="refresh"``,
  ``rel="sharedState"``). ``If-None-Match`` naming the ETag (or ``*``) → ``304`` with the same headers and no
  body. An unknown job → ``404`` ``{"error": "not-found"}`` with ``Cache-Control: no-store`` (a job appears
  once its first record is consumed: asking again soon is right).
- ``GET /jobs?status=<one of the six>&limit=<1..1000, default 100>`` → ``{"jobs": [{"jobId", "jobStatus",
  "statusReason", "startedAt", "stoppedAt"}]}``, most recently changed first; a bad parameter is ``422``.

Absolute links come from ``CHOREO_PROGRESS_URL`` when set, else from the request's base URL. Read-only:
no payload fields, no error texts, no management actions. A store failure is ``503``, never a traceback.
Handlers run on the event loop itself and read with one primary-key query (SQLite: ~50 µs, no lock):
a hop to the thread pool would cost more than the query and, beside the consumer thread, GIL waits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from choreo.config import Settings
from choreo.observability.http import add_health_routes
from choreo.progress.model import JOB_STATUSES, TASK_STATUSES, rfc3339
from choreo.progress.state_api import add_shared_state_routes
from choreo.progress.store import ReadPool

log = logging.getLogger(__name__)

JobStatus = Literal["running", "compensating", "completed", "cancelled", "expired", "failed"]
TaskStatus = Literal["pending", "running", "retrying", "completed", "failed", "dead-lettered"]
assert set(JobStatus.__args__) == set(JOB_STATUSES) and set(TaskStatus.__args__) == set(TASK_STATUSES)  # type: ignore[attr-defined]

SHORT_CACHE = "max-age=1"
LONG_CACHE = "max-age=86400"
_JOB_ID = re.compile(r"[A-Za-z0-9._:~-]{1,200}")
_JSON = "application/json"


class TaskModel(BaseModel):
    taskId: str
    service: str
    taskStatus: TaskStatus
    startedAt: str | None
    stoppedAt: str | None
    taskMaxTTL: float | None
    attempts: int


class LinksModel(BaseModel):
    refresh: str
    sharedState: str


class JobModel(BaseModel):
    jobId: str
    jobStatus: JobStatus
    statusReason: str | None
    startedAt: str | None
    stoppedAt: str | None
    maxTTL: float | None
    deadline: str | None
    tasks: list[TaskModel]
    links: LinksModel


class JobSummary(BaseModel):
    jobId: str
    jobStatus: JobStatus
    statusReason: str | None
    startedAt: str | None
    stoppedAt: str | None


class JobList(BaseModel):
    jobs: list[JobSummary]


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """``If-None-Match`` uses the weak comparison (RFC 9110 §13.1.2): ``W/`` is ignored; ``*`` matches."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or any((t[2:] if t.startswith("W/") else t) == etag for t in tags)


def create_progress_app(settings: Settings, pool: ReadPool, is_ready: Callable[[], bool]) -> FastAPI:
    """The progress service's app: the two resources, shared state (``/jobs/{job_id}/state``),
    ``/metrics``, ``/healthz``, ``/readyz``, ``/openapi.json``."""
    app = FastAPI(title="choreo progress", version="1", description=__doc__, docs_url=None, redoc_url=None)
    fixed_base = (settings.progress_url or "").rstrip("/") or None

    def base(request: Request) -> str:
        return fixed_base or str(request.base_url).rstrip("/")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default body echoes the input; the errors' location and message are enough.
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"error": "invalid-request", "detail": detail}, 422)

    @app.get("/jobs/{job_id}", response_model=None, tags=["progress"],
             responses={200: {"model": JobModel, "description": "the job's progress"},
                        304: {"description": "not modified (If-None-Match)"}, 404: {"description": "unknown job"},
                        503: {"description": "store unavailable"}})
    async def get_job(job_id: str, request: Request) -> Response:
        """One job's progress: status, times, deadline and its tasks (ran and expected). Metadata only."""
        if not _JOB_ID.fullmatch(job_id):
            return _not_found()
        try:
            with pool.tables() as tables:
                stored = tables.job(job_id)
        except Exception:  # noqa: BLE001 - the store's trouble: a JSON 503, never a traceback
            log.exception("progress store failed")
            return _unavailable()
        if stored is None:
            return _not_found()
        url = f"{base(request)}/jobs/{quote(job_id, safe='')}"
        links = json.dumps({"refresh": url, "sharedState": f"{url}/state"}, separators=(",", ":"))
        body = f'{stored.body[:-1]},"links":{links}}}'.encode()
        etag = etag_of(body)
        headers = {"ETag": etag, "Cache-Control": LONG_CACHE if stored.settled else SHORT_CACHE,
                   "Link": f'<{url}>; rel="refresh", <{url}/state>; rel="sharedState"'}
        if matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=_JSON, headers=headers)

    @app.get("/jobs", response_model=JobList, tags=["progress"],
             responses={422: {"description": "bad status or limit"}, 503: {"description": "store unavailable"}})
    async def list_jobs(status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
                  limit: Annotated[int, Query(ge=1, le=1000, description="most jobs listed")] = 100) -> Response:
        """Recent jobs (most recently changed first): ids and statuses."""
        try:
            with pool.tables() as tables:
                rows = tables.recent(status, limit)
        except Exception:  # noqa: BLE001
            log.exception("progress store failed")
            return _unavailable()
        jobs = [JobSummary(jobId=r.job_id, jobStatus=r.status, statusReason=r.reason,  # type: ignore[arg-type]
                           startedAt=rfc3339(r.started_ms), stoppedAt=rfc3339(r.stopped_ms)) for r in rows]
        return Response(JobList(jobs=jobs).model_dump_json(), media_type=_JSON,
                        headers={"Cache-Control": "no-cache"})

    add_health_routes(app, is_alive=lambda: True, is_ready=is_ready)
    add_shared_state_routes(app, settings)
    return app


def _not_found() -> Response:
    return JSONResponse({"error": "not-found", "detail": "no such job (yet)"}, 404,
                        headers={"Cache-Control": "no-store"})


def _unavailable() -> Response:
    return JSONResponse({"error": "unavailable", "detail": "progress store unavailable, retry later"}, 503,
                        headers={"Retry-After": "1", "Cache-Control": "no-store"})
