"""Escalation: tell a human when an event is dead-lettered.

The default hook logs at ERROR; with ``CHOREO_ALERT_WEBHOOK_URL`` set, a JSON alert is POSTed to it.
Posting happens on a daemon thread from a bounded queue, so a slow or dead webhook never stalls the
consumer loop: alerts are best effort and at least once (a batch that is re-run may alert twice);
when the queue is full the alert is logged and dropped, never blocking.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import httpx

from choreo.envelope import headers_to_dict
from choreo.kafka.producer import OutgoingRecord
from choreo.retry import headers as h

log = logging.getLogger(__name__)


def alert_payload(record: OutgoingRecord, error: BaseException, progress_url: str | None) -> dict[str, Any]:
    """The alert body: job, service, error and where to look (progress resource, DLQ entry)."""
    headers = {k: v.decode(errors="replace") for k, v in headers_to_dict(record.headers).items()}
    service = headers.get(h.DLQ_SERVICE, "")
    job_id = headers.get("correlation-id")
    event_id = headers.get("ce_id")
    links: dict[str, str] = {"dlq": f"choreo dlq list {service} --correlation-id {job_id}" if job_id
                             else f"choreo dlq list {service}"}
    if progress_url and job_id:
        links["progress"] = f"{progress_url.rstrip('/')}/jobs/{job_id}"
    return {
        "service": service, "job_id": job_id, "event_id": event_id, "event_type": headers.get("ce_type"),
        "key": record.key.decode(errors="replace") if record.key else None,
        "reason": headers.get(h.DLQ_REASON), "error_type": type(error).__qualname__,
        "error_message": str(error)[: h.MAX_MESSAGE_CHARS], "attempts": headers.get(h.DLQ_ATTEMPTS),
        "dlq_topic": record.topic, "original_topic": headers.get(h.RETRY_ORIGINAL_TOPIC),
        "original_offset": headers.get(h.RETRY_ORIGINAL_OFFSET), "links": links,
    }


class LogAlert:
    """Default escalation: one structured ERROR line per dead letter."""

    def __init__(self, progress_url: str | None = None) -> None:
        self.progress_url = progress_url

    def __call__(self, record: OutgoingRecord, error: BaseException) -> None:
        payload = alert_payload(record, error, self.progress_url)
        log.error("ALERT dead letter service=%(service)s job_id=%(job_id)s event_id=%(event_id)s "
                  "error_type=%(error_type)s reason=%(reason)s", payload)


class WebhookAlert:
    """POST each alert as JSON to ``url`` from a background thread (bounded queue, 5 s timeout)."""

    def __init__(self, url: str, progress_url: str | None = None, max_pending: int = 1000) -> None:
        self.url = url
        self.progress_url = progress_url
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_pending)
        self.sent = 0
        self._thread = threading.Thread(target=self._deliver, name="choreo-alerts", daemon=True)
        self._thread.start()

    def __call__(self, record: OutgoingRecord, error: BaseException) -> None:
        payload = alert_payload(record, error, self.progress_url)
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            log.error("alert queue full, alert dropped: %s", payload)

    def _deliver(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while True:
                payload = self._queue.get()
                try:
                    client.post(self.url, json=payload).raise_for_status()
                    self.sent += 1
                except httpx.HTTPError as exc:
                    log.error("alert webhook %s failed: %s; alert was: %s", self.url, exc, payload)
