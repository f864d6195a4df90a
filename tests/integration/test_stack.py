"""Ports for the local stack's services."""

from __future__ import annotations

import socket

import pytest

from services.stack import FLEET_SECRET_VARIABLE, LocalStack, _ephemeral_ports, free_port


def test_ports_are_free_distinct_and_outside_the_ephemeral_range() -> None:
    """Regression: ports from bind(0) are ephemeral ports, which outgoing connections can take
    before the service binds them ('address already in use' failed a whole CI run)."""
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    low, _ = _ephemeral_ports()
    assert all(10_000 <= port < low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))  # really free


def test_every_service_gets_one_fleet_secret_made_per_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(FLEET_SECRET_VARIABLE, raising=False)
    first, second = LocalStack(workers=2), LocalStack(workers=2)
    assert len(first.fleet_secret) >= 32 and first.fleet_secret != second.fleet_secret
    given = {
        value for service in first.services for key, value in service.env.items()
        if key.endswith("_FLEET_SECRET")
    }  # fmt: skip
    assert given == {first.fleet_secret}
    assert all(
        any(key.endswith("_FLEET_SECRET") for key in service.env) for service in first.services
    )
    worker = first.service("chunk_worker_0").env
    assert worker["CHUNK_WORKER_ORCHESTRATOR_URLS"] == first.url
    monkeypatch.setenv(FLEET_SECRET_VARIABLE, "one-the-environment-gives")
    assert LocalStack().fleet_secret == "one-the-environment-gives"
    stack = LocalStack()
    assert stack.fleet_secret not in repr(stack)  # a failing test prints the stack
