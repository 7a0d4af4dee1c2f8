"""`choreo progress` as a process: SIGKILL mid-stream, restart, same answers as a rebuild from the topics;
and a property-based run against its /openapi.json (no 5xx, whatever the input)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreo.kafka.embedded import free_port
from choreo.testing.processes import ChoreoProcess, wait_until
from tests.integration.progress.conftest import ProgressEnv
from tests.integration.progress.helpers import happy_path, new_job, running_progress, wait_job, without_links


def _process(env: ProgressEnv, state_dir: Path, port: int, log: Path) -> ChoreoProcess:
    s = env.settings
    return ChoreoProcess(
        ["progress", "--host", "127.0.0.1", "--port", str(port), "--tasks-topic", env.tasks_topic,
         "--group", env.group],
        env={"CHOREO_BOOTSTRAP_SERVERS": s.bootstrap_servers, "CHOREO_SCHEMA_REGISTRY_URL": s.schema_registry_url,
             "CHOREO_SCHEMAS_DIR": str(s.schemas_dir), "CHOREO_STATE_DIR": str(state_dir),
             "CHOREO_TOPIC_PARTITIONS": "4", "CHOREO_STORE_URL": ""},
        log_path=log, cwd=Path(__file__).resolve().parents[3]).start()


def test_sigkill_mid_stream_then_restart_agrees_with_a_rebuild(progress_env: ProgressEnv, tmp_path: Path) -> None:
    env = progress_env
    port, state_dir = free_port(), tmp_path / "progress-state"
    jobs = [new_job() for _ in range(40)]
    first = _process(env, state_dir, port, tmp_path / "progress-1.log")
    url = f"http://127.0.0.1:{port}"
    try:
        first.wait_http(f"{url}/readyz", 60)  # /readyz is 503 until assigned: this waits for readiness

        def write() -> None:
            for job in jobs:
                happy_path(env.writer, job)
                time.sleep(0.02)

        writer = threading.Thread(target=write)
        writer.start()
        wait_until(lambda: len(httpx.get(f"{url}/jobs").json()["jobs"]) >= 8, 60, message="jobs seen")
        first.kill()  # SIGKILL, mid-stream
        writer.join(60)
    finally:
        first.kill()
    second = _process(env, state_dir, port, tmp_path / "progress-2.log")
    try:
        second.wait_http(f"{url}/healthz", 60)
        answers = {j.job_id: wait_job(url, j.job_id, lambda b: b["jobStatus"] == "completed" and
                                      all(t["taskStatus"] == "completed" for t in b["tasks"]), 60) for j in jobs}
        assert all(len(body["tasks"]) == 9 for body in answers.values())
    finally:
        second.terminate()
    # A progress service reading everything from scratch (new store, new group) gives the same resources.
    fresh = env.settings.model_copy(update={"state_dir": tmp_path / "rebuilt"})
    with running_progress(fresh, env.tasks_topic, env.group + "-rebuild") as (_, rebuilt):
        for job in jobs:
            again = wait_job(rebuilt, job.job_id, lambda b: b["jobStatus"] == "completed" and
                             all(t["taskStatus"] == "completed" for t in b["tasks"]))
            assert without_links(again) == without_links(answers[job.job_id])


# Printable ASCII without surrounding blanks: what a client can send at all (h11 refuses the rest).
_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80).map(str.strip)
_anything = st.one_of(st.text(max_size=60), st.integers(-10**12, 10**12).map(str), st.just(""))


def test_property_run_against_openapi_never_answers_5xx(progress_env: ProgressEnv) -> None:
    env, job = progress_env, new_job()
    happy_path(env.writer, job)
    with running_progress(env.settings, env.tasks_topic, env.group) as (_, url):
        wait_job(url, job.job_id, lambda b: b["jobStatus"] == "completed")
        spec = httpx.get(f"{url}/openapi.json").json()
        operations = [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
        assert ("/jobs/{job_id}", "get") in [(p, m) for p, m, _ in operations]
        client = httpx.Client(base_url=url, timeout=10)

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.data())
        def call(data: st.DataObject) -> None:
            path, method, op = data.draw(st.sampled_from(operations))
            params: dict[str, str] = {}
            for param in op.get("parameters", []):
                schema = param.get("schema", {})
                choices = schema.get("enum") or [v for alt in schema.get("anyOf", []) for v in alt.get("enum", [])]
                value = data.draw(st.one_of(st.sampled_from(choices or [job.job_id]), _anything))
                if param["in"] == "path":
                    path = path.replace("{" + param["name"] + "}", quote(value, safe="") or "x")
                elif data.draw(st.booleans()):
                    params[param["name"]] = value
            headers = {"If-None-Match": data.draw(_header_text)} if data.draw(st.booleans()) else {}
            if "Authorization" not in headers and data.draw(st.booleans()):
                headers["Authorization"] = ("Bearer " + data.draw(_header_text)).strip()
            body = data.draw(st.one_of(st.none(), st.binary(max_size=200))) if method == "put" else None
            answer = client.request(method.upper(), path, params=params, headers=headers, content=body)
            assert answer.status_code < 500, (method, path, params, headers, answer.status_code, answer.text[:200])

        try:
            call()
        finally:
            client.close()
