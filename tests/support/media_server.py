"""A range-capable media host for tests and benchmarks: uvicorn in a thread, real sockets.

Routes:
    /media/<name>     Starlette FileResponse: single, suffix and multiple ranges, 416, If-Range
    /norange/<name>   the whole file with 200, ignoring Range (a host without range support)
    /missing/<name>   404
    /drop/<name>      a host that vanishes mid-file: answers ranges like /media/, but closes the
                      connection once it reaches `?at=` (a fraction of the file, default 0.5),
                      on every retry too
    /flaky/<name>     a flaky network: answers like /media/, but whatever connection is sending
                      when another `?every=` bytes (all flaky responses together) have gone
                      out is closed mid-body
    /slow/<name>      a host that goes silent: a range starting within `?from=`-`?to=` (fractions
                      of the file, default all of it) waits `?delay=` seconds before answering
    /drip/<name>      a host that trickles: answers a range with honest 206 headers, then sends
                      its body one byte every `?every=` seconds (default 1); each drip's end
                      (the client left) is kept in `TrafficLog.drips_ended`
    /redirect?to=URL  302 to URL
    /internal/uploads/<name>
                      like /media/, but only with the fleet credential (`fleet_secret=`): an
                      orchestrator's upload read-back, for a worker's tests
Every request's served byte count is recorded, so benchmarks can measure bytes fetched, and how
many requests carried an Authorization header (a media host must never see the credential).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.fleet import FleetGate, internal_only


@dataclass
class TrafficLog:
    """Bytes of response body sent per path (thread-safe enough for counting)."""

    bytes_by_path: dict[str, int] = field(default_factory=dict)
    requests_by_path: dict[str, int] = field(default_factory=dict)
    authorized_requests: int = 0
    """Requests that carried an Authorization header."""
    dripping: int = 0
    """/drip/ responses still sending."""
    drips_ended: list[float] = field(default_factory=list)
    """When each /drip/ response stopped (time.monotonic())."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, sent: int, new_request: bool, authorized: bool = False) -> None:
        with self._lock:
            self.bytes_by_path[path] = self.bytes_by_path.get(path, 0) + sent
            if new_request:
                self.requests_by_path[path] = self.requests_by_path.get(path, 0) + 1
                self.authorized_requests += authorized

    def reset(self) -> None:
        with self._lock:
            self.bytes_by_path.clear()
            self.requests_by_path.clear()
            self.authorized_requests = 0


class HostVanished(Exception):
    """Raised inside a /drop/ response to make uvicorn close the connection mid-body."""


class _QuietVanish(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, HostVanished)


_QUIET_VANISH = _QuietVanish()
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class _Flakiness:
    every: int
    left: int


class _DroppingResponse(Response):
    """Serves `bytes=a-b` (or the whole file) with honest headers, then stops at `cut`, or
    when the shared `flakiness` allowance runs out."""

    def __init__(
        self, path: Path, range_header: str | None, cut: int, flakiness: _Flakiness | None = None
    ) -> None:
        super().__init__()
        self.path = path
        self.cut = cut
        self.flakiness = flakiness
        size = path.stat().st_size
        match = _RANGE.match(range_header or "")
        self.first = int(match.group(1)) if match else 0
        self.last = min(int(match.group(2)), size - 1) if match and match.group(2) else size - 1
        self.status_code = 206 if match else 200
        self.size = size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.first >= self.size:
            unsatisfiable = Response(
                status_code=416, headers={"content-range": f"bytes */{self.size}"}
            )
            await unsatisfiable(scope, receive, send)
            return
        headers = [
            (b"content-length", str(self.last - self.first + 1).encode()),
            (b"accept-ranges", b"bytes"),
            (b"content-type", b"application/octet-stream"),
        ]
        if self.status_code == 206:
            content_range = f"bytes {self.first}-{self.last}/{self.size}"
            headers.append((b"content-range", content_range.encode()))
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        with self.path.open("rb") as file:
            file.seek(self.first)
            position = self.first
            while position <= self.last:
                allowed = self.cut - position
                if self.flakiness is not None:
                    allowed = min(allowed, self.flakiness.left)
                if allowed <= 0:
                    if self.flakiness is not None and self.flakiness.left <= 0:
                        self.flakiness.left = self.flakiness.every
                    raise HostVanished(f"connection dropped at byte {position}")
                chunk = file.read(min(65536, self.last - position + 1, allowed))
                position += len(chunk)
                if self.flakiness is not None:
                    self.flakiness.left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _CountingMiddleware:
    def __init__(self, app: ASGIApp, log: TrafficLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        authorized = any(name == b"authorization" for name, _ in scope["headers"])
        self.log.record(path, 0, new_request=True, authorized=authorized)

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                self.log.record(path, len(message.get("body", b"")), new_request=False)
            await send(message)

        await self.app(scope, receive, counting_send)


def build_app(root: Path, log: TrafficLog, fleet_secret: str | None = None) -> ASGIApp:
    def resolve(request: Request) -> Path | None:
        path = (root / request.path_params["name"]).resolve()
        return path if path.is_file() and root.resolve() in path.parents else None

    async def media(request: Request) -> Response:
        path = resolve(request)
        if path is None:
            return Response("not found", status_code=404)
        return FileResponse(path)

    async def no_range(request: Request) -> Response:
        path = resolve(request)
        if path is None:
            return Response("not found", status_code=404)
        return Response(path.read_bytes(), media_type="application/octet-stream")

    async def missing(request: Request) -> Response:
        return Response("not found", status_code=404)

    async def redirect(request: Request) -> Response:
        return RedirectResponse(request.query_params["to"], status_code=302)

    async def drop(request: Request) -> Response:
        path = resolve(request)
        if path is None:
            return Response("not found", status_code=404)
        cut = int(path.stat().st_size * float(request.query_params.get("at", "0.5")))
        return _DroppingResponse(path, request.headers.get("range"), cut)

    flakiness: dict[int, _Flakiness] = {}

    async def flaky(request: Request) -> Response:
        path = resolve(request)
        if path is None:
            return Response("not found", status_code=404)
        every = int(request.query_params["every"])
        shared = flakiness.setdefault(every, _Flakiness(every, every))
        return _DroppingResponse(path, request.headers.get("range"), path.stat().st_size, shared)

    async def slow(request: Request) -> Response:
        path = resolve(request)
        if path is None:
            return Response("not found", status_code=404)
        size = path.stat().st_size
        match = _RANGE.match(request.headers.get("range") or "")
        first = int(match.group(1)) if match else 0
        since, until = (float(request.query_params.get(key, default)) for key, default in
                        (("from", 0), ("to", 1)))  # fmt: skip
        if since * size <= first < until * size:
            wake = time.monotonic() + float(request.query_params["delay"])
            while time.monotonic() < wake:
                if await request.is_disconnected():  # the client gave up: so do we
                    return Response(status_code=499)
                await asyncio.sleep(0.1)
        return FileResponse(path)

    async def drip(request: Request) -> Response:
        path = resolve(request)
        if path is None:
            return Response("not found", status_code=404)
        data = path.read_bytes()
        match = _RANGE.match(request.headers.get("range") or "")
        first = int(match.group(1)) if match else 0
        last = (
            min(int(match.group(2)), len(data) - 1) if match and match.group(2) else len(data) - 1
        )
        every = float(request.query_params.get("every", "1"))

        async def trickle() -> AsyncIterator[bytes]:
            with log._lock:
                log.dripping += 1
            try:
                for position in range(first, last + 1):
                    yield data[position : position + 1]
                    await asyncio.sleep(every)
            finally:
                with log._lock:
                    log.dripping -= 1
                    log.drips_ended.append(time.monotonic())

        headers = {
            "content-length": str(last - first + 1),
            "content-range": f"bytes {first}-{last}/{len(data)}",
            "accept-ranges": "bytes",
        }
        return StreamingResponse(trickle(), status_code=206, headers=headers)

    app = Starlette(
        routes=[
            Route("/media/{name:path}", media),
            Route("/norange/{name:path}", no_range),
            Route("/missing/{name:path}", missing),
            Route("/drop/{name:path}", drop),
            Route("/flaky/{name:path}", flaky),
            Route("/slow/{name:path}", slow),
            Route("/drip/{name:path}", drip),
            Route("/redirect", redirect),
            Route("/internal/uploads/{name:path}", media),
        ]
    )
    gated = FleetGate(
        app, secret=fleet_secret, setting="ORCHESTRATOR_FLEET_SECRET", protects=internal_only
    )
    return _CountingMiddleware(gated, log)


class MediaServer:
    """`with MediaServer(directory) as server: server.url("speech.mp3")`"""

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        fleet_secret: str | None = None,
    ) -> None:
        self.root = root
        self.host = host
        self.traffic = TrafficLog()
        logging.getLogger("uvicorn.error").addFilter(_QUIET_VANISH)
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            build_app(root, self.traffic, fleet_secret),
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,  # /slow/ responses may still be waiting
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, name: str, route: str = "media") -> str:
        return f"{self.base_url}/{route}/{name}"

    def __enter__(self) -> MediaServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("media server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
