"""Typed async clients for service-to-service calls: the one layer that retries.

A `ServiceClient` spreads requests over a `shared.replicas.ReplicaPool` (fewest requests in
flight wins, replicas that just failed sit out a cool-down), retries with exponential backoff and
full jitter (tenacity) on connection failures, 503 (honouring Retry-After) and 504, under one
deadline for a call or a whole stream, and turns every other failure into the error hierarchy of
`shared.errors`. Nothing above this layer retries.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from shared.errors import (
    NotReadyError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    WhisperfleetError,
    error_from_body,
)
from shared.replicas import ReplicaPool
from shared.schemas import (
    CHUNK_STREAM,
    ChunkRequest,
    ClipTranscription,
    DecodeOptions,
    MicroChunkResult,
    SilenceRequest,
    SilenceResult,
    SpeakerEmbeddings,
    SpeakerEmbedRequest,
)
from shared.streams import StreamReader, StreamRemoteError, StreamTruncatedError, StreamTypes
from shared.vad import Span, format_spans

BaseModelT = TypeVar("BaseModelT", bound=BaseModel)
ItemT = TypeVar("ItemT", bound=BaseModel)
POSITION_HEADER = "X-Clip-Position-Sec"
SPEECH_HEADER = "X-Speech-Spans"
LANGUAGE_HINT_HEADER = "X-Language-Hint"
"""A clip's context, not an option: the language its job has been heard in so far."""

_RETRYABLE_STATUS = frozenset({503, 504})
_RETRYABLE_TRANSPORT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.PoolTimeout,
)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay_sec: float = 0.25
    max_delay_sec: float = 8.0
    patience_sec: float = 0.0
    """Retries go on for at least this long after the first failure, whatever `attempts`
    says: a peer restarting (refused connections, then 503 while its model loads) or a burst
    of overload is ridden out instead of failing the work it was doing."""

    def delay(self, attempt: int, retry_after_sec: float | None = None) -> float:
        """Full-jitter exponential backoff; a server's Retry-After is a floor."""
        ceiling = min(self.max_delay_sec, self.base_delay_sec * 2**attempt)
        delay = random.uniform(0, ceiling)
        if retry_after_sec is not None:
            delay = max(delay, min(retry_after_sec, self.max_delay_sec))
        return delay


class _Retryable(Exception):
    """An attempt failed in a way another attempt (maybe on another replica) may not."""

    def __init__(self, error: WhisperfleetError) -> None:
        super().__init__(error.message)
        self.error = error


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class ServiceClient:
    """Calls one peer service (all its replicas) with the retry policy and a deadline.

    One retry loop (tenacity) for plain calls and for streams, and one deadline rule: every
    wait, response and stream item must arrive within `deadline_sec` of the first attempt,
    retries and backoff included; past it, a 504 naming the peer.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        pool: ReplicaPool,
        *,
        name: str,
        setting_hint: str,
        retry: RetryPolicy | None = None,
        deadline_sec: float = 600.0,
    ) -> None:
        self._http = http
        self.pool = pool
        self.name = name
        self._hint = setting_hint
        self._retry = retry or RetryPolicy()
        self._deadline_sec = deadline_sec

    def _attempts(self) -> AsyncRetrying:
        policy = self._retry

        def wait(state: RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome else None
            retry_after = failure.error.retry_after_sec if isinstance(failure, _Retryable) else None
            return policy.delay(state.attempt_number - 1, retry_after)

        def stop(state: RetryCallState) -> bool:
            failure = state.outcome.exception() if state.outcome else None
            if isinstance(failure, _Retryable) and isinstance(failure.error, NotReadyError):
                return False  # a model still loading: wait for it (the deadline bounds this)
            return (
                state.attempt_number >= policy.attempts
                and (state.seconds_since_start or 0.0) >= policy.patience_sec
            )

        return AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )

    def _unreachable(self, replica_url: str, exc: Exception, what: str) -> _Retryable:
        return _Retryable(
            UpstreamUnavailableError(
                f"{self.name} {what} at {replica_url} ({type(exc).__name__}: "
                f"{exc or 'connection failed'}); check {self._hint}",
                retry_after_sec=1,
            )
        )

    def _timed_out(self, path: str) -> UpstreamTimeoutError:
        return UpstreamTimeoutError(
            f"{self.name} did not answer {path} within {self._deadline_sec:g} s"
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            async with asyncio.timeout(self._deadline_sec):
                async for attempt in self._attempts():
                    with attempt:
                        return await self._request_once(method, path, **kwargs)
        except TimeoutError:
            raise self._timed_out(path) from None
        except _Retryable as exc:
            raise exc.error from None
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def _request_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with self.pool.lease() as replica:
            try:
                response = await self._http.request(method, replica.url + path, **kwargs)
            except _RETRYABLE_TRANSPORT as exc:
                self.pool.mark_failed(replica)
                raise self._unreachable(replica.url, exc, "unreachable") from exc
            except httpx.TimeoutException as exc:
                raise UpstreamTimeoutError(
                    f"{self.name} at {replica.url} timed out ({type(exc).__name__})"
                ) from exc
        if response.is_success:
            self.pool.mark_ok(replica)
            return response
        raise self._response_error(response)

    def _response_error(self, response: httpx.Response) -> Exception:
        error = error_from_body(response.status_code, response.content, source=self.name)
        if response.status_code == 401:
            # The fleet credential (shared/fleet.py), not the end client's key: a 502 for them.
            return UpstreamError(
                f"{self.name} refused this service's fleet credential ({error.message}); every "
                "service must be given the same fleet secret"
            )
        if response.status_code not in _RETRYABLE_STATUS:
            return error
        error.retry_after_sec = _retry_after(response) or error.retry_after_sec
        return _Retryable(error)

    async def call(self, path: str, body: BaseModel, result: type[BaseModelT]) -> BaseModelT:
        response = await self.request("POST", path, json=body.model_dump(mode="json"))
        return result.model_validate_json(response.content)

    async def stream(
        self, path: str, body: BaseModel, types: StreamTypes[ItemT, Any, Any]
    ) -> AsyncIterator[ItemT]:
        """POST `body` and yield the typed stream's items, resuming on another replica.

        If the connection fails or the stream is cut short, the request is re-sent (same retry
        policy) and the items already delivered are skipped: a resumed stream must repeat its
        items in the same order, which holds for chunk workers (same audio, same cuts).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._deadline_sec
        delivered = 0
        items = self._stream_attempts(path, body, types)
        try:
            while True:
                try:
                    # The deadline bounds our own waits only, never the consumer's code.
                    async with asyncio.timeout_at(deadline):
                        item, index = await anext(items)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise self._timed_out(path) from None
                if index >= delivered:
                    delivered = index + 1
                    yield item
        finally:
            await items.aclose()

    async def _stream_attempts(
        self, path: str, body: BaseModel, types: StreamTypes[ItemT, Any, Any]
    ) -> AsyncGenerator[tuple[ItemT, int]]:
        """(item, its index in the stream) across attempts; a later attempt starts again at 0."""
        try:
            async for attempt in self._attempts():
                with attempt:
                    async for pair in self._stream_once(path, body, types):
                        yield pair
                    return
        except _Retryable as exc:
            raise exc.error from None

    async def _stream_once(
        self, path: str, body: BaseModel, types: StreamTypes[ItemT, Any, Any]
    ) -> AsyncIterator[tuple[ItemT, int]]:
        async with self.pool.lease() as replica:
            try:
                async with self._http.stream(
                    "POST", replica.url + path, json=body.model_dump(mode="json")
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        raise self._response_error(response)
                    index = 0
                    async for item in StreamReader(types, response.aiter_bytes()).items():
                        yield item, index
                        index += 1
                self.pool.mark_ok(replica)
            except StreamRemoteError as exc:
                raise error_from_body(
                    502, json.dumps(exc.body).encode(), source=self.name
                ) from None
            except (*_RETRYABLE_TRANSPORT, StreamTruncatedError) as exc:
                self.pool.mark_failed(replica)
                raise self._unreachable(replica.url, exc, "failed mid-request") from exc
            except httpx.TimeoutException as exc:
                raise UpstreamTimeoutError(
                    f"{self.name} at {replica.url} went silent ({type(exc).__name__})"
                ) from exc


class ModelServerClient:
    """The chunk worker's view of the model server."""

    def __init__(self, service: ServiceClient) -> None:
        self.service = service

    async def transcribe_clip(
        self,
        wav: bytes,
        options: DecodeOptions,
        position_sec: float | None = None,
        speech: list[Span] | None = None,
        language_hint: str | None = None,
    ) -> ClipTranscription:
        """`position_sec`, the clip's place in its media, lets the server serve earlier
        clips of a job first (see the batcher's scheduling); `speech`, where the VAD found
        speech in the clip, spares the server its own VAD pass; `language_hint`, the language
        its job has been heard in, is what a detection unsure between it and another picks."""
        headers = {"content-type": "audio/wav"}
        if language_hint is not None:
            headers[LANGUAGE_HINT_HEADER] = language_hint
        if position_sec is not None:
            headers[POSITION_HEADER] = f"{position_sec:.3f}"
        if speech is not None:
            headers[SPEECH_HEADER] = format_spans(speech)
        response = await self.service.request(
            "POST", "/v1/clips", content=wav, params=options.query(), headers=headers
        )
        return ClipTranscription.model_validate_json(response.content)


class WorkerClient:
    """The orchestrator's view of the chunk workers."""

    def __init__(self, service: ServiceClient) -> None:
        self.service = service

    def transcribe_chunk(self, request: ChunkRequest) -> AsyncIterator[MicroChunkResult]:
        """Micro chunk results of one macro chunk, in order, as the worker produces them."""
        return self.service.stream("/v1/chunks", request, CHUNK_STREAM)

    async def find_silence(self, request: SilenceRequest) -> SilenceResult:
        return await self.service.call("/v1/silence", request, SilenceResult)

    async def embed_speakers(self, request: SpeakerEmbedRequest) -> SpeakerEmbeddings:
        """Voice embeddings of known speakers' reference clips."""
        return await self.service.call("/v1/speakers", request, SpeakerEmbeddings)
