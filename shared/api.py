"""What every service's app shares: the error handlers and the health endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from shared.errors import (
    ErrorBody,
    ErrorDetail,
    WhisperfleetError,
    validation_error_body,
)
from shared.schemas import Health

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def read_capped(
    request: Request, limit: int, too_large: Callable[[int | None], WhisperfleetError]
) -> bytes:
    """The request body, refused as soon as it passes `limit` bytes: by its Content-Length
    before reading (`too_large(declared)`), else while reading (`too_large(None)`)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(None)
    return bytes(body)


class ClientDisconnectedError(Exception):
    """The HTTP client went away before its answer was ready."""


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it the moment the client disconnects.

    Starlette does not cancel a plain endpoint when its client leaves; without this, a job keeps
    computing for nobody. Call it once the request body has been read.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise ClientDisconnectedError
    return task.result()


def error_response(error: WhisperfleetError) -> JSONResponse:
    return JSONResponse(
        error.body().model_dump(), status_code=error.status_code, headers=error.headers()
    )


class CancellingStreamingResponse(StreamingResponse):
    """A StreamingResponse that stops its producer the moment the client disconnects.

    Under ASGI spec >= 2.4 Starlette only notices a departed client on its next write; a producer
    that writes rarely (a chunk worker waiting on the model) would keep computing for nobody
    until then. This one always listens for the disconnect and cancels the stream at once.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                with contextlib.suppress(OSError):
                    await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()
        if self.background is not None:
            await self.background()


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure, expected or not, to the one error body."""

    async def on_whisperfleet_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, WhisperfleetError)
        if exc.status_code >= 500:
            logger.warning("%s: %s", exc.code, exc.message)
        return error_response(exc)

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error_body(list(exc.errors())))

    async def on_http_exception(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = ErrorBody(
            error=ErrorDetail(message=str(exc.detail), type="invalid_request_error", code=code)
        )
        return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=exc.headers)

    async def on_disconnect(_: Request, exc: Exception) -> Response:
        return Response(status_code=499)  # nobody is listening; nginx's "client closed request"

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return error_response(WhisperfleetError(f"internal error: {type(exc).__name__}: {exc}"))

    app.add_exception_handler(WhisperfleetError, on_whisperfleet_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(ClientDisconnectedError, on_disconnect)
    app.add_exception_handler(Exception, on_unexpected)


def health_router(service: str, readiness: Callable[[Request], str | None]) -> APIRouter:
    """`/healthz` answers while the process lives; `/readyz` is 503 until `readiness` returns None.

    `readiness(request)` returns None when ready, else a short reason ("loading model").
    """
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Health)
    async def liveness() -> Health:
        """Liveness: the process is up."""
        return Health(status="ok", service=service)

    @router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    async def readiness_probe(request: Request) -> Health | JSONResponse:
        """Readiness: the service can take work now."""
        reason = readiness(request)
        if reason is None:
            return Health(status="ok", service=service)
        body = Health(status="loading", service=service, detail=reason)
        return JSONResponse(body.model_dump(), status_code=503)

    return router
