"""A range-capable media host for tests and benchmarks: uvicorn in a thread, real sockets.

Routes:
    /media/<name>     Starlette FileResponse: single, suffix and multiple ranges, 416, If-Range
    /norange/<name>   the whole file with 200, ignoring Range (a host without range support)
    /missing/<name>   404
Every request's served byte count is recorded, so benchmarks can measure bytes fetched.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class TrafficLog:
    """Bytes of response body sent per path (thread-safe enough for counting)."""

    bytes_by_path: dict[str, int] = field(default_factory=dict)
    requests_by_path: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, sent: int, new_request: bool) -> None:
        with self._lock:
            self.bytes_by_path[path] = self.bytes_by_path.get(path, 0) + sent
            if new_request:
                self.requests_by_path[path] = self.requests_by_path.get(path, 0) + 1

    def reset(self) -> None:
        with self._lock:
            self.bytes_by_path.clear()
            self.requests_by_path.clear()


class _CountingMiddleware:
    def __init__(self, app: ASGIApp, log: TrafficLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        self.log.record(path, 0, new_request=True)

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                self.log.record(path, len(message.get("body", b"")), new_request=False)
            await send(message)

        await self.app(scope, receive, counting_send)


def build_app(root: Path, log: TrafficLog) -> ASGIApp:
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

    app = Starlette(
        routes=[
            Route("/media/{name:path}", media),
            Route("/norange/{name:path}", no_range),
            Route("/missing/{name:path}", missing),
        ]
    )
    return _CountingMiddleware(app, log)


class MediaServer:
    """`with MediaServer(directory) as server: server.url("speech.mp3")`"""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = root
        self.host = host
        self.traffic = TrafficLog()
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(build_app(root, self.traffic), log_level="warning", lifespan="off")
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
