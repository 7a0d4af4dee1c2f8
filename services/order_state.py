"""The order service's table, shared by its handlers (services.order) and its HTTP API (services.order_api).

``order_orders`` holds one row per order; times are epoch milliseconds (BIGINT, portable), ``lines`` is
the order's lines as JSON. ``status`` is ``running`` | ``completed`` | ``cancelled`` | ``expired``;
``reason`` is null or the outcome's code (``payment-declined``, ``stock-unavailable``, ``fraud-rejected``,
``expired``). A row with an empty ``customer_id`` is a stub: a terminal event arrived before OrderPlaced.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from services.events import OrderPlaced
from services.rules import from_ms

STATE_DDL = (
    """CREATE TABLE IF NOT EXISTS order_orders (
        order_id    TEXT PRIMARY KEY,
        job_id      TEXT,
        customer_id TEXT NOT NULL,
        status      TEXT NOT NULL,
        reason      TEXT,
        lines       TEXT NOT NULL,
        total_minor BIGINT NOT NULL,
        currency    TEXT NOT NULL,
        placed_at   BIGINT,
        deadline    BIGINT,
        finished_at BIGINT
    )""",
)

COLUMNS = ("order_id", "job_id", "customer_id", "status", "reason", "lines", "total_minor", "currency",
           "placed_at", "deadline", "finished_at")
SELECT_ORDER = f"SELECT {', '.join(COLUMNS)} FROM order_orders WHERE order_id = ?"
TIME_COLUMNS = ("placed_at", "deadline", "finished_at")


def lines_json(order: OrderPlaced) -> str:
    """The order's lines as stored in ``order_orders.lines`` (and shown by ``GET /orders/{id}``)."""
    return json.dumps([line.model_dump() for line in order.lines])


def rfc3339(moment: datetime | None) -> str | None:
    """UTC, millisecond precision, ``Z`` suffix (what SPEC §5 calls RFC 3339 UTC)."""
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order_view(row: tuple[Any, ...]) -> dict[str, Any]:
    """A ``SELECT_ORDER`` row as the JSON body of ``GET /orders/{order_id}``."""
    view = dict(zip(COLUMNS, row, strict=True))
    view["lines"] = json.loads(view["lines"] or "[]")
    view["total_minor"] = int(view["total_minor"])
    for name in TIME_COLUMNS:
        value = view[name]
        view[name] = rfc3339(from_ms(None if value is None else int(value)))
    return view
