"""A dead letter calls the escalation webhook with the job id, service, error and links."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from choreo import Context, PermanentError, Service
from choreo.retry import RetryPolicy
from choreo.testing.processes import wait_until
from tests.integration.runtime.conftest import EchoEnv, running
from tests.support.echo import Ping, Pong


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def test_dead_letter_alert_reaches_the_webhook(echo_env: EchoEnv, unique) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    echo_env.settings = echo_env.settings.model_copy(update={
        "alert_webhook_url": f"http://127.0.0.1:{server.server_port}/alerts"})  # no progress service
    service = Service(unique("alerting"), retry=RetryPolicy(delays=(0.1,), jitter=0.0))

    @service.handler(Ping)
    def refuse(event: Ping, ctx: Context) -> Pong:
        raise PermanentError("card expired")

    try:
        with echo_env.publisher() as publisher:
            root = publisher.publish(Ping(key="o-9", seq=1))
        with running(service, echo_env):
            wait_until(lambda: bool(_Receiver.received), 30, message="webhook called")
    finally:
        server.shutdown()
    alert = _Receiver.received[0]
    assert alert["service"] == service.name
    assert alert["job_id"] == root.correlation_id and alert["event_id"] == root.event_id
    assert alert["error_type"] == "PermanentError" and alert["error_message"] == "card expired"
    assert alert["reason"] == "permanent-error" and alert["key"] == "o-9"
    assert "progress" not in alert["links"]
    assert service.name in alert["links"]["dlq"]


def test_with_a_progress_service_the_runtime_only_logs_its_dead_letters(echo_env: EchoEnv) -> None:
    """The progress service sends the one alert per job and cause; services do not page per message."""
    from choreo.retry.alerts import LogAlert
    from choreo.runtime.worker import alert_hook

    settings = echo_env.settings.model_copy(update={"alert_webhook_url": "http://hooks.local/alerts",
                                                    "progress_url": "http://progress.local"})
    assert isinstance(alert_hook(settings), LogAlert)
