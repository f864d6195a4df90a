"""A webhook receiver for tests: records every POST (headers and body), answers 204."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """`with WebhookReceiver() as hooks: ... hooks.url ... hooks.wait(1)`"""

    deliveries: list[Delivery] = field(default_factory=list)
    failures_first: int = 0
    """Answer this many POSTs with 503 before accepting (to see the retries)."""

    def __post_init__(self) -> None:
        async def hook(request: Request) -> Response:
            self.deliveries.append(Delivery(dict(request.headers), await request.body()))
            if len(self.deliveries) <= self.failures_first:
                return Response(status_code=503)
            return Response(status_code=204)

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
            log_level="warning",
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait(self, count: int, timeout_sec: float = 30.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout_sec
        while len(self.deliveries) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.deliveries

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
