"""Escalation with links: a job's step was dead-lettered, or the job expired.

Once per job and cause. Causes: ``dead-lettered:<service>`` (a second service's dead letter in the same
job is a different cause — another team's step) and ``expired``. What was alerted is a row of
``progress_alerts``, written in the transaction of the facts that caused it, so neither a restart nor a
redelivered record alerts again. The row is ``sent=0`` until the hook delivered it; rows still unsent at
start are sent again (at least once: a crash between delivery and the mark may repeat one alert).

A dead-lettered task record and its ``<service>.dlq`` record travel on different topics: the alert waits
up to ``grace_s`` for the DLQ position, then goes without it (the ``choreo dlq list`` command still finds
the entry). Causes older than ``max_age_s`` when first seen (a fresh progress service reading old
history) are recorded but not sent: nobody needs a page for last week's expiry.

Delivery: a log line at ERROR, or with ``CHOREO_ALERT_WEBHOOK_URL`` a JSON POST from a daemon thread
(bounded queue, 5 s timeout), so a slow webhook never holds up the consumer. Metadata only: ids, service,
reason code, links; no payload and no error text.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from choreo.progress.model import DeadLetterFact, JobView
from choreo.retry.headers import dlq_topic

log = logging.getLogger(__name__)

Payload = dict[str, Any]


@dataclass(frozen=True)
class Alert:
    job_id: str
    cause: str
    payload: Payload


def job_links(base_url: str, job_id: str) -> dict[str, str]:
    base = base_url.rstrip("/")
    return {"progress": f"{base}/jobs/{job_id}", "sharedState": f"{base}/jobs/{job_id}/state"}


def due_alerts(view: JobView, dead_letters: list[DeadLetterFact], alerted: set[str], base_url: str,
               now_ms: int, grace_s: float) -> tuple[list[Alert], bool]:
    """The alerts ``view`` calls for that are not in ``alerted``, and whether one waits for its DLQ position."""
    alerts: list[Alert] = []
    waiting = False
    for task in view.dead_lettered:
        cause = f"dead-lettered:{task.service}"
        if cause in alerted or any(a.cause == cause for a in alerts):
            continue
        entry = next((d for d in reversed(dead_letters)
                      if d.service == task.service and d.event_id == task.input_id), None)
        if entry is None and now_ms - (task.stopped_ms or now_ms) < grace_s * 1000:
            waiting = True
            continue
        alerts.append(Alert(view.job_id, cause, dead_letter_payload(view, task.service, task.task_id,
                                                                    task.stopped_ms, entry, base_url)))
    if view.end_status == "expired" and "expired" not in alerted:
        unfinished = sorted({t.service for t in view.tasks if t.status in ("pending", "running", "retrying")})
        alerts.append(Alert(view.job_id, "expired", {
            "alert": "job-expired", "job_id": view.job_id, "service": None, "reason": "expired",
            "at_ms": view.end_ms, "unfinished_services": unfinished, "links": job_links(base_url, view.job_id)}))
    return alerts, waiting


def dead_letter_payload(view: JobView, service: str, task_id: str, at_ms: int | None,
                        entry: DeadLetterFact | None, base_url: str) -> Payload:
    links: dict[str, Any] = job_links(base_url, view.job_id)
    links["dlqList"] = f"choreo dlq list {service} --correlation-id {view.job_id}"
    if entry is not None:
        links["dlq"] = {"topic": entry.topic, "partition": entry.partition, "offset": entry.offset}
        links["dlqShow"] = f"choreo dlq show {service} {entry.partition}:{entry.offset}"
    else:
        links["dlq"] = {"topic": dlq_topic(service), "partition": None, "offset": None}
    return {"alert": "step-dead-lettered", "job_id": view.job_id, "service": service, "reason": "dead-lettered",
            "task_id": task_id, "at_ms": at_ms, "links": links}


class AlertSender:
    """Delivers alerts: a log line, plus a webhook POST when ``url`` is set. ``on_sent(job, cause)`` is
    called (from the delivery thread for a webhook) once an alert is delivered."""

    def __init__(self, url: str | None, on_sent: Callable[[str, str], None], max_pending: int = 1000) -> None:
        self.url = url
        self.on_sent = on_sent
        self.sent = 0
        self._queue: queue.Queue[Alert] = queue.Queue(maxsize=max_pending)
        if url:
            threading.Thread(target=self._deliver, name="choreo-progress-alerts", daemon=True).start()

    def send(self, alert: Alert) -> None:
        p = alert.payload
        log.error("ALERT %s job_id=%s service=%s reason=%s progress=%s%s", p["alert"], p["job_id"], p["service"],
                  p["reason"], p["links"]["progress"],
                  f" open: {p['links']['dlqShow']}" if "dlqShow" in p["links"] else "")
        if not self.url:
            self.sent += 1
            self.on_sent(alert.job_id, alert.cause)
            return
        try:
            self._queue.put_nowait(alert)
        except queue.Full:  # stays unsent in the store: sent again at the next start
            log.error("alert queue full, webhook alert left for the next start: job_id=%s", alert.job_id)

    def _deliver(self) -> None:
        assert self.url is not None
        with httpx.Client(timeout=5.0) as client:
            while True:
                alert = self._queue.get()
                try:
                    client.post(self.url, json=alert.payload).raise_for_status()
                except httpx.HTTPError as exc:
                    log.error("alert webhook %s failed: %s (job_id=%s; sent again at the next start)",
                              self.url, type(exc).__name__, alert.job_id)
                    continue
                self.sent += 1
                self.on_sent(alert.job_id, alert.cause)
