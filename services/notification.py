"""Reference service `notification`: tells the customer how their order ended.

Run it with `choreo run notification`. Contract (SPEC §7):

- OrderCompleted / OrderCancelled / OrderExpired → one line appended to
  ``$CHOREO_STATE_DIR/notifications.log`` (the simulated channel) and CustomerNotified.
- One line per order: the order is recorded in ``notification_sent`` in the handler's transaction and a
  later terminal event of the same order (or a redelivery) is skipped. The file append happens inside
  the transaction, before its commit; only a crash between the two can repeat a line (the event is
  then redelivered and the row is still missing), never lose one.
- Its failures (an unwritable file, say) are retried and dead-lettered in this service alone: nothing
  consumes CustomerNotified to move the job, so they never affect the order.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from choreo import Context, Service
from choreo.config import get_settings
from choreo.retry import RetryPolicy
from choreo.state import execute, fetchone
from services.events import CustomerNotified, OrderCancelled, OrderCompleted, OrderExpired
from services.rules import to_ms

LOG_NAME = "notifications.log"
CHANNEL = "log-file"

STATE_DDL = (
    """CREATE TABLE IF NOT EXISTS notification_sent (
        order_id    TEXT PRIMARY KEY,
        outcome     TEXT NOT NULL,
        notified_at BIGINT NOT NULL
    )""",
)

service = Service("notification", retry=RetryPolicy(delays=(0.5, 2.0, 5.0)), ordered_retries=True,
                  state_ddl=STATE_DDL)


def log_path() -> Path:
    """Where the lines go: ``notifications.log`` in the state directory (``CHOREO_STATE_DIR``)."""
    return Path(get_settings().state_dir) / LOG_NAME


def notification_line(order_id: str, outcome: str, reason: str | None, at: datetime) -> str:
    """One JSON object per line, so a reader (or a test) parses the file without guessing."""
    return json.dumps({"at": at.isoformat().replace("+00:00", "Z"), "order_id": order_id,
                       "outcome": outcome, "reason": reason}, separators=(",", ":")) + "\n"


def _notify(order_id: str, outcome: str, reason: str | None, ctx: Context) -> CustomerNotified | None:
    if fetchone(ctx.tx, "SELECT 1 FROM notification_sent WHERE order_id = ?", (order_id,)) is not None:
        return None  # this order was reported already: one line per order
    now = datetime.now(UTC)
    execute(ctx.tx, "INSERT INTO notification_sent (order_id, outcome, notified_at) VALUES (?, ?, ?)",
            (order_id, outcome, to_ms(now)))
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_APPEND: several processes of this service may write the same file; each line lands whole.
    with path.open("a", encoding="utf-8") as file:
        file.write(notification_line(order_id, outcome, reason, now))
        file.flush()
        os.fsync(file.fileno())
    return CustomerNotified(order_id=order_id, channel=CHANNEL, template=f"order-{outcome}",
                            outcome=outcome, notified_at=now)


@service.handler(OrderCompleted, transactional=True)
def completed(event: OrderCompleted, ctx: Context) -> CustomerNotified | None:
    return _notify(event.order_id, "completed", None, ctx)


@service.handler(OrderCancelled, transactional=True)
def cancelled(event: OrderCancelled, ctx: Context) -> CustomerNotified | None:
    return _notify(event.order_id, "cancelled", event.reason, ctx)


@service.handler(OrderExpired, transactional=True)
def expired(event: OrderExpired, ctx: Context) -> CustomerNotified | None:
    return _notify(event.order_id, "expired", "expired", ctx)
