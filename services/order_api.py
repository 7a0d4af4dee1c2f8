"""The Order API (SPEC §5): ``POST /orders`` starts a job, ``GET /orders/{order_id}`` reads an order.

- ``POST /orders`` → ``202 {"order_id", "job_id", "progress_url"}`` and ``Location: <progress_url>``.
  The body is read at most 64 KiB (``Content-Length`` first, then the streamed bytes) before anything
  parses it: more is ``413``. It is parsed and validated in one step by pydantic (strict: ``"2"`` or
  ``2.5`` is not a quantity), so bad JSON, wrong types and missing fields are all ``422`` with the
  field errors (``{"detail": [...]}``, FastAPI's shape). The store or broker being down is ``503``.
  Bad input never answers 5xx.
- The order row (``running``) is stored before OrderPlaced is published and removed again if the
  publish fails, so an accepted order is always both stored and published. ``job_id`` is the
  OrderPlaced's ``correlation-id``, generated here (random, 122 bits) like the order id.
- ``GET /orders/{order_id}`` → the stored order (times RFC 3339 UTC), ``404`` for an unknown id.
- An optional ``delivery`` object (name, street, city, postcode, 2-letter country; each validated, 422
  otherwise) goes to the job's shared state (SPEC §5, :mod:`choreo.shared_state`) under ``"delivery"``,
  where ``shipping`` reads it. Not on OrderPlaced: events are kept for days and read by every service,
  an address is personal data only shipping needs. Written here, *before* the order is stored and
  OrderPlaced published, rather than by order's OrderPlaced handler: shipping's join cannot tell "no
  details" from "not written yet", and a handler racing the saga lost (shipping dispatched with the
  defaults in 2 of 3 fresh test runs). Written first, any service that sees the job sees its details.
  The price: with the progress service down (or no ``CHOREO_SERVICE_TOKEN``) an order *with* delivery
  details is ``503`` (nothing stored, nothing published; the client retries, as when the broker is
  down); orders without details never touch it. If storing or publishing fails afterwards, the details
  are removed from the state again (best effort: the job never starts, nobody reads them).

Requests run on uvicorn's threads: one store connection for the app, used under a lock (it is not safe
for concurrent use); publishing goes through ``ApiDeps.publish``, thread-safe (concurrent orders share
one flush).
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from choreo.api import ApiDeps
from choreo.envelope import new_id
from choreo.idempotency import IdempotencyStore
from choreo.runtime.tables import DDL_LOCK
from choreo.shared_state import SharedState, shared_state_for
from choreo.state import execute, fetchone
from services.events import OrderLine, OrderPlaced
from services.order_state import SELECT_ORDER, STATE_DDL, lines_json, order_view
from services.rules import DELIVERY_KEY, to_ms

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_LONG = 2**63 - 1  # Avro long: every amount must fit
MAX_INT = 2**31 - 1  # Avro int: the quantity
MAX_TTL_S = 86_400.0  # a day: a job's deadline must stay a sane timestamp
DEFAULT_PROGRESS_URL = "http://127.0.0.1:8001"


class LineRequest(BaseModel):
    sku: str = Field(min_length=1, max_length=200)
    quantity: StrictInt = Field(ge=1, le=MAX_INT)
    unit_price_minor: StrictInt = Field(ge=0, le=MAX_LONG)


_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # no control characters: these end up on a label


class DeliveryRequest(BaseModel):
    """Where the order goes; ``country`` is ISO 3166-1 alpha-2 (upper-cased)."""

    name: StrictStr = Field(min_length=1, max_length=200, pattern=_PRINTABLE)
    street: StrictStr = Field(min_length=1, max_length=200, pattern=_PRINTABLE)
    city: StrictStr = Field(min_length=1, max_length=100, pattern=_PRINTABLE)
    postcode: StrictStr = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]{0,10}[A-Za-z0-9]$",
                                description="2-12 letters, digits, spaces or dashes")
    country: StrictStr = Field(pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2 code")

    @field_validator("name", "street", "city")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("country")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class OrderRequest(BaseModel):
    """The body of ``POST /orders``; unknown fields are ignored."""

    customer_id: str = Field(min_length=1, max_length=200)
    lines: list[LineRequest] = Field(min_length=1, max_length=1000)
    currency: str = Field(pattern=r"^[A-Za-z]{3}$", description="ISO-4217 code, 3 letters")
    max_ttl_s: StrictInt | StrictFloat | None = Field(
        default=None, gt=0, le=MAX_TTL_S, description="seconds until the job expires (default CHOREO_JOB_MAX_TTL_S)")
    delivery: DeliveryRequest | None = Field(default=None, description="where to ship (optional)")

    @field_validator("customer_id", "currency")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @model_validator(mode="after")
    def _total_fits(self) -> OrderRequest:
        if self.total_minor > MAX_LONG:
            raise ValueError(f"order total exceeds {MAX_LONG} minor units")
        return self

    @property
    def total_minor(self) -> int:
        return sum(line.quantity * line.unit_price_minor for line in self.lines)


class OrderAccepted(BaseModel):
    order_id: str
    job_id: str
    progress_url: str


class OrderView(BaseModel):
    order_id: str
    job_id: str | None
    customer_id: str
    status: str = Field(description="running | completed | cancelled | expired")
    reason: str | None = Field(description="null, or payment-declined | stock-unavailable | fraud-rejected | expired")
    lines: list[dict[str, Any]]
    total_minor: int
    currency: str
    placed_at: str | None
    deadline: str | None
    finished_at: str | None


class OrderDesk:
    """Stores and publishes orders for the app (thread-safe: a lock around the store, ApiDeps.publish)."""

    def __init__(self, deps: ApiDeps) -> None:
        self.deps = deps
        self._store: IdempotencyStore | None = None
        self._store_lock = threading.Lock()

    def _with_store(self, work: Any, *, read_only: bool = False) -> Any:
        """Run ``work(tx)`` in a transaction of the app's own store connection (opened on first use);
        ``read_only`` queries take no write lock (the consumer writes the same SQLite file)."""
        with self._store_lock:
            if self._store is None:
                store = self.deps.open_store()
                with store.transaction(self.deps.service) as tx:
                    # Concurrent CREATE TABLE IF NOT EXISTS can fail on PostgreSQL's catalog: take the
                    # advisory lock the worker takes for its DDL at start (choreo.runtime.tables).
                    if tx.dialect == "postgresql":
                        execute(tx, DDL_LOCK)
                    for ddl in STATE_DDL:  # the consumer may not have started yet: create the table here too
                        execute(tx, ddl)
                self._store = store
            unit = self._store.read if read_only else self._store.transaction
            with unit(self.deps.service) as tx:
                return work(tx)

    def progress_url(self, job_id: str) -> str:
        return f"{(self.deps.settings.progress_url or DEFAULT_PROGRESS_URL).rstrip('/')}/jobs/{job_id}"

    def place(self, request: OrderRequest) -> OrderAccepted:
        order_id, job_id = f"ord-{uuid.uuid4().hex}", new_id()  # random, never sequential
        placed_at = datetime.now(UTC)
        ttl_s = float(request.max_ttl_s if request.max_ttl_s is not None else self.deps.settings.job_max_ttl_s)
        deadline = placed_at + timedelta(seconds=ttl_s)
        event = OrderPlaced(
            order_id=order_id, customer_id=request.customer_id, currency=request.currency.upper(),
            lines=[OrderLine(**line.model_dump()) for line in request.lines],
            total_minor=request.total_minor, placed_at=placed_at, deadline=deadline)

        # Delivery details first (shipping may read them as soon as the job runs), then the event, then
        # our row. Publish before storing: a crash between the two leaves a published order without a
        # row, which order's own OrderPlaced handler stores (and arms its deadline); stored before
        # publishing, a crash would leave a row that no event ever closes — running for ever.
        delivery = None if request.delivery is None else self._deliver_to(job_id, request.delivery)
        try:
            envelope = self.deps.publish(event, correlation_id=job_id)  # acked; concurrent orders share a flush
        except BaseException:
            self._forget_delivery(delivery)  # not published: no job will ever read them
            raise
        # Stored before the 202, so GET /orders/{id} finds the order at once; the handler may have
        # stored it already (it consumed the event first): then this insert does nothing.
        self._with_store(lambda tx: execute(
            tx, "INSERT INTO order_orders (order_id, job_id, customer_id, status, lines, total_minor,"
                " currency, placed_at, deadline) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)"
                " ON CONFLICT (order_id) DO NOTHING",
            (order_id, job_id, event.customer_id, lines_json(event), event.total_minor, event.currency,
             to_ms(placed_at), to_ms(deadline))))
        return OrderAccepted(order_id=order_id, job_id=envelope.correlation_id,
                             progress_url=self.progress_url(envelope.correlation_id))

    def _deliver_to(self, job_id: str, delivery: DeliveryRequest) -> SharedState:
        """Put the details in the job's shared state (absolute: the whole object under its key).
        SharedStateError (→ 503) when the state cannot be written or shared state is off."""
        state = shared_state_for(self.deps.settings, job_id)
        details = delivery.model_dump()
        state.update(lambda current: {**(current or {}), DELIVERY_KEY: details})
        return state

    def _forget_delivery(self, state: SharedState | None) -> None:
        if state is None:
            return
        try:
            state.update(lambda current: {k: v for k, v in (current or {}).items() if k != DELIVERY_KEY})
        except Exception:  # noqa: BLE001 - best effort: the job never started, so nobody will read them
            log.warning("could not remove the delivery details of unplaced job %s", state.job_id)

    def get(self, order_id: str) -> dict[str, Any] | None:
        row = self._with_store(lambda tx: fetchone(tx, SELECT_ORDER, (order_id,)), read_only=True)
        return None if row is None else order_view(row)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise HTTPException(413, detail=f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, detail=f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(deps: ApiDeps) -> FastAPI:
    """The Order API app (``choreo run order`` adds /metrics, /healthz and /readyz)."""
    desk = OrderDesk(deps)
    app = FastAPI(title="choreo order API", version="1", description=__doc__)

    @app.post("/orders", status_code=202, response_model=OrderAccepted,
              responses={413: {"description": "body over 64 KiB"}, 422: {"description": "invalid order"},
                         503: {"description": "store, broker or shared state unavailable"}},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/OrderRequest"}}}}})
    async def place_order(request: Request) -> JSONResponse:
        body = await read_body(request)
        try:
            order = OrderRequest.model_validate_json(body)
        except ValidationError as exc:
            # No "input" echo: it may be bytes (not JSON) and up to 64 KiB of the caller's own body.
            return JSONResponse({"detail": exc.errors(include_url=False, include_context=False,
                                                      include_input=False)}, 422)
        try:
            accepted = await run_in_threadpool(desk.place, order)
        except Exception:  # noqa: BLE001 - infrastructure trouble: the client may retry, never a traceback
            log.exception("could not place an order")
            return JSONResponse({"detail": "order service unavailable, retry later"}, 503)
        return JSONResponse(accepted.model_dump(), 202, headers={"Location": accepted.progress_url})

    @app.get("/orders/{order_id}", response_model=OrderView, responses={404: {"description": "unknown order"}})
    async def get_order(order_id: str) -> JSONResponse:
        try:
            view = await run_in_threadpool(desk.get, order_id)
        except Exception:  # noqa: BLE001
            log.exception("could not read order %s", order_id)
            return JSONResponse({"detail": "order service unavailable, retry later"}, 503)
        if view is None:
            return JSONResponse({"detail": "no such order", "order_id": order_id}, 404)
        return JSONResponse(view)

    def openapi() -> dict[str, Any]:
        """FastAPI's document plus the request body schema (the body is parsed by hand, see read_body)."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            request_schema = OrderRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(request_schema.pop("$defs", {}))
            components["OrderRequest"] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
