"""The gate and the event streams' send timeout on real sockets: a large body without a key is
refused before it is read; a reader that stops reading loses its stream, and its key's job
slot is free again within the send timeout."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from services.stack import ServiceProcess, free_port

pytestmark = pytest.mark.e2e

MB = 1_000_000


@pytest.fixture(scope="module")
def orchestrator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The orchestrator alone, with API keys (no workers: nothing here gets that far)."""
    root = tmp_path_factory.mktemp("gate")
    port = free_port()
    process = ServiceProcess(
        "orchestrator",
        "services.orchestrator",
        port,
        {
            "ORCHESTRATOR_PORT": str(port),
            "ORCHESTRATOR_API_KEYS": "secret",
            "ORCHESTRATOR_WORKER_URLS": "http://127.0.0.1:9",
            "ORCHESTRATOR_UPLOAD_DIR": str(root / "uploads"),
            "ORCHESTRATOR_DATABASE_URL": f"sqlite:///{root / 'jobs.db'}",
        },
        log_path=root / "orchestrator.log",
    )
    process.start()
    try:
        with httpx.Client() as client:
            for _ in range(300):
                try:
                    if client.get(f"{process.url}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
                assert process.process is not None and process.process.poll() is None
            else:
                raise TimeoutError(process.log_tail())
        yield process.url
    finally:
        process.stop()


def send_until_answered(url: str, head: bytes, size: int) -> tuple[int, bytes, float]:
    """Send `head`, then up to `size` body bytes as fast as the server takes them, until an
    answer comes: the bytes sent by then, the answer, the seconds it took."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    assert port is not None
    sock = socket.create_connection((host, port))
    sock.sendall(head)
    sock.setblocking(False)
    piece = b"x" * 65536
    sent, answer = 0, b""
    started = time.monotonic()
    try:
        while time.monotonic() - started < 60 and b"\r\n\r\n" not in answer:
            wanted = [sock] if sent < size else []
            readable, writable, _ = select.select([sock], wanted, [], 1.0)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
            elif writable:
                try:
                    sent += sock.send(piece[: size - sent])
                except (BrokenPipeError, ConnectionResetError):
                    wanted = []
    finally:
        sock.close()
    return sent, answer, time.monotonic() - started


@pytest.mark.parametrize("path", ["/v1/render?format=srt", "/v1/transcribe"])
def test_200_mb_without_a_key_are_refused_before_a_quarter_is_read(
    orchestrator: str, path: str
) -> None:
    """Was: the whole body read (61 s for 200 MB to /v1/render) before the 401."""
    size = 200 * MB
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    sent, answer, elapsed = send_until_answered(orchestrator, head, size)
    print(f"{path}: {sent} of {size} bytes sent before the answer, {elapsed:.2f} s")
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b"www-authenticate: bearer" in answer.lower()
    assert sent < size // 4
    assert elapsed < 5.0
