"""The progress resource over HTTP against a real broker and registry (SPEC §5)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import httpx

from choreo.envelope import step_request_id
from services import events as ev
from tests.integration.progress.conftest import ProgressEnv
from tests.integration.progress.helpers import SECRET_ERROR, happy_path, new_job, placed, running_progress, wait_job


def test_running_then_completed_with_etag_cache_control_and_links(progress_env: ProgressEnv) -> None:
    env, job = progress_env, new_job()
    root = env.writer.root(job, "placed", placed(f"o-{uuid.uuid4().hex[:8]}", ttl_s=45))
    env.writer.flush()
    with running_progress(env.settings, env.tasks_topic, env.group) as (_, url):
        body = wait_job(url, job.job_id, lambda b: len(b["tasks"]) == 3)
        assert body["jobStatus"] == "running" and body["statusReason"] is None and body["stoppedAt"] is None
        assert 44 < body["maxTTL"] <= 45.0 and body["deadline"].endswith("Z") and body["startedAt"].endswith("Z")
        assert {(t["service"], t["taskStatus"]) for t in body["tasks"]} == {
            ("order", "pending"), ("payment", "pending"), ("fraud", "pending")}
        assert {t["taskId"] for t in body["tasks"]} == {
            step_request_id(root.event_id, s) for s in ("order", "payment", "fraud")}
        answer = httpx.get(f"{url}/jobs/{job.job_id}")
        assert answer.headers["cache-control"] == "max-age=1"
        etag = answer.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        assert answer.headers["link"] == (f'<{url}/jobs/{job.job_id}>; rel="refresh", '
                                          f'<{url}/jobs/{job.job_id}/state>; rel="sharedState"')
        assert answer.json()["links"] == {"refresh": f"{url}/jobs/{job.job_id}",
                                          "sharedState": f"{url}/jobs/{job.job_id}/state"}
        for tags in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
            again = httpx.get(f"{url}/jobs/{job.job_id}", headers={"If-None-Match": tags})
            assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
            assert again.headers["cache-control"] == "max-age=1" and "link" in again.headers
        assert httpx.get(f"{url}/jobs/{job.job_id}", headers={"If-None-Match": '"other"'}).status_code == 200

        job2 = new_job()
        happy_path(env.writer, job2)
        done = wait_job(url, job2.job_id, lambda b: b["jobStatus"] == "completed"
                        and all(t["taskStatus"] == "completed" for t in b["tasks"]))
        assert len(done["tasks"]) == 9 and done["stoppedAt"] is not None
        final = httpx.get(f"{url}/jobs/{job2.job_id}")
        assert final.headers["cache-control"] == "max-age=86400"
        assert httpx.get(f"{url}/jobs/{job2.job_id}", headers={"If-None-Match": final.headers["etag"]}
                         ).status_code == 304
        # The first job moves on: its ETag changes.
        env.writer.task(job, root, "payment", "retrying", attempt=1)
        env.writer.flush()
        moved = wait_job(url, job.job_id, lambda b: any(t["taskStatus"] == "retrying" for t in b["tasks"]))
        assert next(t for t in moved["tasks"] if t["service"] == "payment")["attempts"] == 1
        assert httpx.get(f"{url}/jobs/{job.job_id}", headers={"If-None-Match": etag}).status_code == 200

        metrics = httpx.get(f"{url}/metrics").text
        assert 'choreo_jobs{service="progress",status="completed"}' in metrics
        assert 'choreo_jobs_finished_total{service="progress",status="completed"}' in metrics
        assert "choreo_job_duration_seconds_bucket" in metrics
        assert httpx.get(f"{url}/healthz").status_code == 200 and httpx.get(f"{url}/readyz").status_code == 200


def test_unknown_job_list_and_validation(progress_env: ProgressEnv) -> None:
    env, job = progress_env, new_job()
    happy_path(env.writer, job)
    with running_progress(env.settings, env.tasks_topic, env.group) as (_, url):
        wait_job(url, job.job_id, lambda b: b["jobStatus"] == "completed")
        missing = httpx.get(f"{url}/jobs/{uuid.uuid4()}")
        assert missing.status_code == 404 and missing.json()["error"] == "not-found"
        assert missing.headers["cache-control"] == "no-store"
        assert httpx.get(f"{url}/jobs/{'x' * 500}").status_code == 404
        listed = httpx.get(f"{url}/jobs", params={"status": "completed", "limit": 5}).json()["jobs"]
        assert {"jobId": job.job_id, "jobStatus": "completed", "statusReason": None} == {
            k: listed[0][k] for k in ("jobId", "jobStatus", "statusReason")}
        assert httpx.get(f"{url}/jobs", params={"status": "running"}).json()["jobs"] == []
        assert job.job_id in [j["jobId"] for j in httpx.get(f"{url}/jobs").json()["jobs"]]
        for params in ({"status": "done"}, {"limit": 0}, {"limit": 1001}, {"limit": "many"}):
            bad = httpx.get(f"{url}/jobs", params=params)
            assert bad.status_code == 422, params
            assert "done" not in bad.text and "many" not in bad.text  # no echo of the input
        spec = httpx.get(f"{url}/openapi.json").json()
        assert {"/jobs/{job_id}", "/jobs"} <= set(spec["paths"])
        # No management actions: every operation of the progress resource is a GET.
        assert set(spec["paths"]["/jobs/{job_id}"]) == {"get"} and set(spec["paths"]["/jobs"]) == {"get"}


def test_no_payload_field_or_error_text_in_any_answer(progress_env: ProgressEnv) -> None:
    env, job = progress_env, new_job()
    happy_path(env.writer, job, tasks=False)
    cancel_job = new_job()
    oid = f"o-{uuid.uuid4().hex[:8]}"
    root = env.writer.root(cancel_job, "placed", placed(oid))
    cancelled = env.writer.emit(cancel_job, "cancelled", root, "order", ev.OrderCancelled(
        order_id=oid, reason="payment-declined", cancelled_at=datetime.now(UTC)))
    env.writer.task(cancel_job, cancelled, "payment", "dead-lettered", attempt=3)
    env.writer.dead_letter(cancel_job, cancelled, "payment", ev.OrderCancelled(
        order_id=oid, reason="payment-declined", cancelled_at=datetime.now(UTC)))
    env.writer.flush()
    with running_progress(env.settings, env.tasks_topic, env.group) as (_, url):
        wait_job(url, job.job_id, lambda b: b["jobStatus"] == "completed")
        body = wait_job(url, cancel_job.job_id, lambda b: b["jobStatus"] == "failed")
        assert body["statusReason"] == "dead-lettered"
        answers = [httpx.get(f"{url}/jobs/{j.job_id}").text for j in (job, cancel_job)]
        answers += [httpx.get(f"{url}/jobs").text, httpx.get(f"{url}/jobs", params={"status": "failed"}).text]
    text = "\n".join(answers)
    # The declared fields the resource exists to show (deadline, reason code) are its metadata; every
    # other payload value of every event of the jobs must be absent, and so must the dead letter's error.
    declared = {"payment-declined"}
    leaked = [v for v in (job.values | cancel_job.values) - declared if v in text]
    assert not [v for v in leaked if not _is_time(v)], leaked
    assert SECRET_ERROR not in text and "boom" not in text and "UpstreamError" not in text
    assert "retries-exhausted" not in text
    for value in json.loads(answers[0])["tasks"]:
        assert set(value) == {"taskId", "service", "taskStatus", "startedAt", "stoppedAt", "taskMaxTTL", "attempts"}


def _is_time(value: str) -> bool:
    """Datetimes are written as epoch micros by Avro; none of them may appear either, but a 4+ digit
    number can collide with a year or an attempt count: such collisions are not leaks."""
    return value.isdigit() and len(value) < 6
