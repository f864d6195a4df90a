"""Ports for the local stack's services."""

from __future__ import annotations

import socket

from services.stack import _ephemeral_ports, free_port


def test_ports_are_free_distinct_and_outside_the_ephemeral_range() -> None:
    """Regression: ports from bind(0) are ephemeral ports, which outgoing connections can take
    before the service binds them ('address already in use' failed a whole CI run)."""
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    low, _ = _ephemeral_ports()
    assert all(10_000 <= port < low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))  # really free
