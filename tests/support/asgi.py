"""Apps in-process: the app factory, its lifespan, and an httpx client over ASGITransport; one raw
ASGI call, to count how much of a body an app reads."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI


@contextlib.asynccontextmanager
async def serve(
    app: FastAPI, base_url: str = "http://localhost", headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """`app` with its lifespan running, and a client that calls it without a socket (as
    `localhost`: a name the orchestrator's Host allow-list takes by default), sending `headers`
    with every request (the fleet credential, for a worker or the model server)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=base_url, headers=headers
        ) as client:
            yield client


class RawCall:
    """One raw ASGI call with a large body offered in pieces: how much of it was read."""

    def __init__(self, path: str, authorization: str | None, body_bytes: int) -> None:
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(body_bytes).encode())]  # fmt: skip
        if authorization is not None:
            headers.append((b"authorization", authorization.encode()))
        self.scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                      "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
                      "query_string": b"", "root_path": "", "headers": headers,
                      "client": ("127.0.0.1", 1), "server": ("app", 80)}  # fmt: skip
        self.left = body_bytes
        self.pieces_read = 0
        self.status: int | None = None
        self.body = b""

    async def receive(self) -> dict[str, Any]:
        piece = min(self.left, 1 << 20)
        self.left -= piece
        self.pieces_read += 1
        head = b'{"value": 1}' if self.pieces_read == 1 else b""  # then spaces: valid JSON
        body = head + b" " * (piece - len(head))
        return {"type": "http.request", "body": body, "more_body": self.left > 0}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    async def run(self, app: Any) -> RawCall:
        await app(self.scope, self.receive, self.send)
        return self
