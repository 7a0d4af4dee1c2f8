"""`choreo dev`'s plan: which processes exist, their ports and arguments, taken-port checks."""

from __future__ import annotations

import socket

import pytest

from choreo.cli.devplan import REFERENCE_PROCESSES, DevPlan, ReferenceProcess, assign_metrics_ports, is_available
from choreo.cli.supervisor import restart_delay
from choreo.errors import ConfigError
from choreo.kafka.embedded import free_port

BY_NAME = {p.name: p for p in REFERENCE_PROCESSES}


def plan(**overrides: object) -> DevPlan:
    fields: dict[str, object] = {"host": "127.0.0.1", "broker_port": free_port(), "registry_port": free_port(),
                                 "order_api_port": free_port(), "progress_port": free_port(),
                                 "processes": list(REFERENCE_PROCESSES)}
    return DevPlan(**{**fields, **overrides})  # type: ignore[arg-type]


def test_the_reference_list_is_the_flow_then_the_observer() -> None:
    assert [p.name for p in REFERENCE_PROCESSES] == [
        "order", "payment", "fraud", "inventory", "shipping", "notification", "progress"]


def test_a_service_counts_when_its_module_exists_and_a_command_when_registered() -> None:
    assert is_available(BY_NAME["payment"])  # services/payment.py is in the repository
    assert not is_available(ReferenceProcess("no-such-service"))
    assert is_available(BY_NAME["progress"], commands={"progress", "run"})
    assert not is_available(BY_NAME["progress"], commands={"run", "dev"})


def test_registered_commands_are_read_from_the_cli_app() -> None:
    from choreo.cli.devplan import registered_commands

    assert {"run", "dev", "demo", "broker", "registry", "schemas", "topics"} <= registered_commands()


def test_metrics_ports_are_fixed_by_position_and_fall_back_when_taken() -> None:
    with socket.socket() as sock:
        # Below the ephemeral range (free_port), so the neighbours the test expects free are not taken
        # meanwhile by some process's outgoing connection (a flake under parallel test runs).
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        busy = sock.getsockname()[1]
        base = busy - 2  # fraud is index 2: its fixed port is taken
        ports = assign_metrics_ports(["payment", "fraud", "shipping"], "127.0.0.1", base)
    assert ports["payment"] == base + 1 and ports["shipping"] == base + 4
    assert ports["fraud"] != busy and ports["fraud"] > 0
    free = assign_metrics_ports(["payment", "fraud"], "127.0.0.1", 0)
    assert all(port > 0 for port in free.values())


def test_arguments_health_and_metrics_urls() -> None:
    p = plan(metrics_ports={"payment": 9101})
    assert p.argv(BY_NAME["payment"]) == ["run", "payment"]
    assert p.argv(BY_NAME["progress"]) == ["progress", "--host", "127.0.0.1", "--port", str(p.progress_port)]
    assert p.health_bases(BY_NAME["payment"]) == ["http://127.0.0.1:9101"]
    assert p.health_bases(BY_NAME["order"]) == [f"http://127.0.0.1:{p.order_api_port}"]
    urls = p.metrics_urls()
    assert urls["order"] == f"http://127.0.0.1:{p.order_api_port}/metrics"  # the API serves /metrics too
    assert urls["payment"] == "http://127.0.0.1:9101/metrics"
    assert "fraud" not in urls  # no port assigned
    assert p.service_names == ["order", "payment", "fraud", "inventory", "shipping", "notification"]


def test_external_cluster_and_registry_replace_the_embedded_ones() -> None:
    p = plan(external_bootstrap="kafka:9092", external_registry="http://sr:8081")
    assert p.bootstrap_servers == "kafka:9092" and p.registry_url == "http://sr:8081"
    assert [what for what, _ in p.fixed_ports()] == ["order API", "progress service"]


def test_only_processes_that_exist_claim_their_fixed_ports() -> None:
    p = plan(processes=[BY_NAME["payment"]])
    assert [what for what, _ in p.fixed_ports()] == ["broker", "registry"]


def test_two_parts_on_one_port_and_a_taken_port_are_refused() -> None:
    port = free_port()
    with pytest.raises(ConfigError, match=f"the broker and the order API cannot both use port {port}"):
        plan(broker_port=port, order_api_port=port).check_ports()
    with socket.socket() as sock:
        # Below the ephemeral range (free_port), so the neighbours the test expects free are not taken
        # meanwhile by some process's outgoing connection (a flake under parallel test runs).
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        busy = sock.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot start the progress service: port 127.0.0.1:{busy} is"):
            plan(progress_port=busy).check_ports()


def test_restart_backoff_doubles_from_half_a_second_to_fifteen() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
