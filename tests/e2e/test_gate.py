"""The gate and the event streams' send timeout on real sockets: a large body without a key is
refused before it is read; a reader that stops reading loses its stream, and its key's job
slot is free again within the send timeout."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from services.orchestrator.app import create_app
from services.stack import ServiceProcess, free_port
from tests.support.orchestrator import EndlessJob, multipart, settings

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


class ServerThread:
    """The orchestrator's app under uvicorn in a thread: real sockets, and an app whose state
    the test can reach (its job runner is replaced by an endless one)."""

    def __init__(self, tmp_path: Path, **values: object) -> None:
        self.port = free_port()
        self.app = create_app(settings(tmp_path, port=self.port, **values))
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive()
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def test_a_reader_that_stops_reading_frees_its_job_slot_within_the_send_timeout(
    tmp_path: Path,
) -> None:
    """A client whose receive buffer is tiny and never read: the server's sends block. With
    one job per key, the key's next stream is refused (429) until the first is dropped."""
    send_timeout = 1.0
    with ServerThread(
        tmp_path, api_keys="k", max_jobs_per_key=1, sse_send_timeout_sec=send_timeout
    ) as served:
        served.app.state.runner = EndlessJob(served.app.state.settings, served.app.state.gate)
        body = multipart("b0undary", b"\0" * 4096)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        stalled.connect(("127.0.0.1", served.port))
        stalled.sendall(
            b"POST /v1/transcribe/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer k\r\n"
            b"Content-Type: multipart/form-data; boundary=b0undary\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        started = time.monotonic()
        while not served.app.state.gate._running:  # the stream holds the key's slot
            assert time.monotonic() - started < 10
            time.sleep(0.01)
        uploads = tmp_path / "uploads"
        statuses = []
        with httpx.Client(base_url=f"http://127.0.0.1:{served.port}") as client:
            while time.monotonic() - started < send_timeout + 10:
                with client.stream(
                    "POST",
                    "/v1/transcribe/stream",
                    files={"file": ("b.wav", b"\0" * 4096)},
                    headers={"Authorization": "Bearer k"},
                ) as response:
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        break
                time.sleep(0.1)
            freed_after = time.monotonic() - started
        stalled.close()
    print(f"slot free again after {freed_after:.2f} s (send timeout {send_timeout} s)")
    assert statuses[0] == 429  # the first stream held the key's one slot
    assert statuses[-1] == 200
    assert freed_after < send_timeout + 5.0
    assert list(uploads.iterdir()) == []
