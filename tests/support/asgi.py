"""Apps in-process: the app factory, its lifespan, and an httpx client over ASGITransport."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

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
