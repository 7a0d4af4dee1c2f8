"""Order tolerance, compensation, failed until replay, escalation once per job and cause, restart."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request

from choreo.config import Settings
from choreo.observability.http import BackgroundHTTPServer
from choreo.testing.processes import wait_until
from services import events as ev
from tests.integration.progress.conftest import ProgressEnv
from tests.integration.progress.helpers import (
    SECRET_ERROR,
    happy_path,
    new_job,
    placed,
    running_progress,
    wait_job,
    without_links,
)


@contextmanager
def webhook(settings: Settings) -> Iterator[tuple[Settings, list[dict[str, Any]]]]:
    """``settings`` with their alert webhook on a local server, and what is POSTed to it."""
    received: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/alerts", status_code=204)
    async def alert(request: Request) -> None:
        received.append(await request.json())

    server = BackgroundHTTPServer(app, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        wait_until(lambda: _answers(f"{url}/openapi.json"), 15, message="alert webhook answers")
        yield settings.model_copy(update={"alert_webhook_url": f"{url}/alerts"}), received
    finally:
        server.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_records_in_any_order_give_the_same_resource(progress_env: ProgressEnv) -> None:
    env = progress_env
    in_order, reversed_job = new_job(), new_job()
    happy_path(env.writer, in_order)
    # The same saga, but every task record first and the root event last.
    oid = f"o-{uuid.uuid4().hex[:8]}"
    job = reversed_job
    with running_progress(env.settings, env.tasks_topic, env.group) as (_, url):
        from choreo.envelope import caused_envelope, root_envelope, step_request_id

        root_env = root_envelope("io.choreo.shop.OrderPlaced", "test", oid, correlation_id=job.job_id)
        # As the runtime stamps it: the emitting step's request-id, so the event also reports that step.
        done_env = caused_envelope(root_env, position=0, event_type="io.choreo.shop.OrderCompleted", source="order",
                                   subject=oid, request_id=step_request_id(root_env.event_id, "order"))
        env.writer.task(job, root_env, "payment")
        env.writer.task(job, done_env, "notification")
        env.writer.flush()
        early = wait_job(url, job.job_id, lambda b: len(b["tasks"]) == 2)
        assert early["jobStatus"] == "running" and early["startedAt"] is None
        # Now the events, terminal first, root last (the writer re-uses the envelopes' ids).
        env.writer._send(job, "completed", ev.OrderCompleted(order_id=oid, shipment_id="s", completed_at=datetime.now(
            UTC)), done_env)
        env.writer.flush()
        wait_job(url, job.job_id, lambda b: b["jobStatus"] == "completed")
        env.writer._send(job, "placed", placed(oid), root_env)
        env.writer.task(job, root_env, "payment")  # a duplicate record
        env.writer.flush()
        body = wait_job(url, job.job_id, lambda b: b["startedAt"] is not None and len(b["tasks"]) == 4)
        statuses = sorted((t["service"], t["taskStatus"]) for t in body["tasks"])
        # order's step is completed by the event it emitted (no task record of its own)
        assert statuses == [("fraud", "pending"), ("notification", "completed"), ("order", "completed"),
                            ("payment", "completed")]
        assert body["jobStatus"] == "completed"
        wait_job(url, in_order.job_id, lambda b: b["jobStatus"] == "completed")


def test_cancelled_job_compensates_then_is_cancelled(progress_env: ProgressEnv) -> None:
    env, job = progress_env, new_job()
    oid = f"o-{uuid.uuid4().hex[:8]}"
    root = env.writer.root(job, "placed", placed(oid))
    declined = env.writer.emit(job, "declined", root, "payment", ev.PaymentDeclined(
        order_id=oid, reason="amount over card limit", declined_at=datetime.now(UTC)))
    cancelled = env.writer.emit(job, "cancelled", declined, "order", ev.OrderCancelled(
        order_id=oid, reason="payment-declined", cancelled_at=datetime.now(UTC)))
    env.writer.flush()
    with running_progress(env.settings, env.tasks_topic, env.group) as (_, url):
        body = wait_job(url, job.job_id, lambda b: b["jobStatus"] == "compensating")
        assert body["statusReason"] == "payment-declined" and body["stoppedAt"] is None
        compensation = {"payment", "inventory", "shipping", "notification"}
        for service in sorted(compensation):
            env.writer.task(job, cancelled, service)
        env.writer.flush()
        body = wait_job(url, job.job_id, lambda b: b["jobStatus"] == "cancelled")
        assert body["statusReason"] == "payment-declined" and body["stoppedAt"] is not None
        # The earlier steps (of the root and the decline) are still pending: the cache stays short.
        assert httpx.get(f"{url}/jobs/{job.job_id}").headers["cache-control"] == "max-age=1"


def test_dead_letter_fails_the_job_alerts_once_and_a_replay_heals_it(progress_env: ProgressEnv) -> None:
    env, job = progress_env, new_job()
    oid = f"o-{uuid.uuid4().hex[:8]}"
    root = env.writer.root(job, "placed", placed(oid))
    for attempt, status in ((1, "retrying"), (2, "retrying"), (3, "dead-lettered")):
        env.writer.task(job, root, "payment", status, attempt=attempt)
    env.writer.dead_letter(job, root, "payment", placed(oid))
    env.writer.flush()
    with webhook(env.settings) as (settings, received):
        with running_progress(settings, env.tasks_topic, env.group) as (_, url):
            body = wait_job(url, job.job_id, lambda b: b["jobStatus"] == "failed")
            assert body["statusReason"] == "dead-lettered"
            payment = next(t for t in body["tasks"] if t["service"] == "payment")
            assert payment["taskStatus"] == "dead-lettered" and payment["attempts"] == 3
            wait_until(lambda: len(received) >= 1, 20, message="alert")
            alert = received[0]
            assert alert["job_id"] == job.job_id and alert["service"] == "payment"
            assert alert["reason"] == "dead-lettered"
            links = alert["links"]
            assert links["progress"] == f"{url}/jobs/{job.job_id}" and links["sharedState"].endswith("/state")
            assert links["dlq"]["topic"] == "payment.dlq" and links["dlq"]["offset"] is not None
            assert links["dlqShow"] == f"choreo dlq show payment {links['dlq']['partition']}:{links['dlq']['offset']}"
            assert SECRET_ERROR not in json.dumps(alert)
            # The same dead letter again (a redelivery): no second alert.
            env.writer.task(job, root, "payment", "dead-lettered", attempt=3)
            env.writer.flush()
        # A restart reads nothing new and remembers what it alerted.
        with running_progress(settings, env.tasks_topic, env.group) as (_, url):
            env.writer.task(job, root, "payment", "dead-lettered", attempt=3)
            env.writer.flush()
            wait_job(url, job.job_id, lambda b: b["jobStatus"] == "failed")
            # The replay lets the step finish: the same task id completes.
            env.writer.task(job, root, "payment", "completed", attempt=1)
            env.writer.flush()
            body = wait_job(url, job.job_id, lambda b: b["jobStatus"] == "running")
            assert next(t for t in body["tasks"] if t["service"] == "payment")["taskStatus"] == "completed"
        assert len(received) == 1, received


def test_expired_job_compensates_and_alerts_once(progress_env: ProgressEnv) -> None:
    env, job = progress_env, new_job()
    oid = f"o-{uuid.uuid4().hex[:8]}"
    root = env.writer.root(job, "placed", placed(oid, ttl_s=1))
    # OrderExpired comes from the order service's timer: its cause is the timer's record, never on a topic.
    timer = root._replace(event_id=str(uuid.uuid4()))
    expired = env.writer.emit(job, "expired", timer, "order", ev.OrderExpired(
        order_id=oid, deadline=datetime.now(UTC), expired_at=datetime.now(UTC)))
    env.writer.flush()
    with webhook(env.settings) as (settings, received):
        with running_progress(settings, env.tasks_topic, env.group) as (_, url):
            body = wait_job(url, job.job_id, lambda b: b["jobStatus"] == "compensating")
            assert body["statusReason"] == "expired"
            wait_until(lambda: len(received) == 1, 20, message="expiry alert")
            assert received[0]["reason"] == "expired" and received[0]["job_id"] == job.job_id
            for service in ("payment", "inventory", "shipping", "notification"):
                env.writer.task(job, expired, service)
            env.writer.flush()
            wait_job(url, job.job_id, lambda b: b["jobStatus"] == "expired")
        assert len(received) == 1


def test_state_survives_a_restart(progress_env: ProgressEnv) -> None:
    env, job = progress_env, new_job()
    happy_path(env.writer, job)
    with running_progress(env.settings, env.tasks_topic, env.group) as (_, url):
        first = wait_job(url, job.job_id, lambda b: b["jobStatus"] == "completed")
    # Same store, same group: nothing is re-read, the answer comes from the store.
    with running_progress(env.settings, env.tasks_topic, env.group) as (_, url):
        again = httpx.get(f"{url}/jobs/{job.job_id}").json()
    assert without_links(again) == without_links(first)



def test_on_postgresql_facts_jobs_and_alerts(progress_env: ProgressEnv, pg_url: str) -> None:
    env, job, failed = progress_env, new_job(), new_job()
    settings = env.settings.model_copy(update={"store_url": pg_url})
    happy_path(env.writer, job)
    oid = f"o-{uuid.uuid4().hex[:8]}"
    root = env.writer.root(failed, "placed", placed(oid))
    env.writer.task(failed, root, "payment", "dead-lettered", attempt=3)
    env.writer.dead_letter(failed, root, "payment", placed(oid))
    env.writer.flush()
    with running_progress(settings, env.tasks_topic, env.group) as (_, url):
        first = wait_job(url, job.job_id, lambda b: b["jobStatus"] == "completed")
        wait_job(url, failed.job_id, lambda b: b["jobStatus"] == "failed")
        listed = httpx.get(f"{url}/jobs", params={"status": "failed", "limit": 1000}).json()["jobs"]
        assert failed.job_id in [j["jobId"] for j in listed]
    with running_progress(settings, env.tasks_topic, env.group) as (_, url):
        again = httpx.get(f"{url}/jobs/{job.job_id}").json()
    assert without_links(again) == without_links(first)
