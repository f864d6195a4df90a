"""A worker's two ways to media, each a guarded client and its own range proxy.

    media_url ──> clients' media: the worker's own address rule
                  (`CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS`, never taken from a request)
    upload_id ──> http://orchestrators/internal/uploads/<id>, with the fleet credential:
                  `OrchestratorFailover` sends each request (the check, every range the proxy
                  asks for, every retry) to one of `CHUNK_WORKER_ORCHESTRATOR_URLS`, the next
                  one when one can't be connected to

Every orchestrator serves every upload (jobs/uploads.py), so one that dies mid-job costs the
proxy a reconnect to another, not the job; the proxy keeps one URL, and one set of pages, per
upload whichever orchestrator serves it. The credential goes only to the orchestrators: the
client for clients' media never carries it. Both proxies live as long as the worker (one page
cache each, `range_cache_mb` apiece).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from types import TracebackType

import httpx

from services.chunk_worker.range_proxy import RangeProxy
from shared.errors import (
    MediaUnavailableError,
    UpstreamError,
    UpstreamUnavailableError,
    error_from_body,
)
from shared.media_host import AddressPolicy, media_client
from shared.schemas import ChunkRequest, SilenceRequest

ORCHESTRATORS_SETTING = "CHUNK_WORKER_ORCHESTRATOR_URLS"
ORCHESTRATORS_BASE = "http://orchestrators"
"""The base of every upload URL the worker reads; `OrchestratorFailover` picks the real one."""


class OrchestratorFailover(httpx.AsyncBaseTransport):
    """Sends each request for `ORCHESTRATORS_BASE` to the orchestrator that answered last, and
    on to the next while one can't be connected to."""

    def __init__(self, urls: Sequence[str], inner: httpx.AsyncBaseTransport) -> None:
        self.bases = [httpx.URL(url.rstrip("/")) for url in urls]
        self.inner = inner
        self._preferred = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        failures = []
        for step in range(len(self.bases)):
            index = (self._preferred + step) % len(self.bases)
            try:
                response = await self.inner.handle_async_request(
                    _sent_to(self.bases[index], request)
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failures.append(f"{self.bases[index]} ({type(exc).__name__})")
                continue
            self._preferred = index
            response.extensions["orchestrator"] = str(self.bases[index])  # for error messages
            return response
        raise httpx.ConnectError(
            f"no orchestrator answered: {', '.join(failures)}", request=request
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def _sent_to(base: httpx.URL, request: httpx.Request) -> httpx.Request:
    """`request` (for `ORCHESTRATORS_BASE`) addressed to the orchestrator at `base`."""
    url = request.url.copy_with(
        scheme=base.scheme,
        host=base.host,
        port=base.port,
        path=base.path.rstrip("/") + request.url.path,
    )
    headers = request.headers.copy()
    headers["host"] = base.netloc.decode("ascii")
    return httpx.Request(
        request.method, url, headers=headers, stream=request.stream, extensions=request.extensions
    )


class MediaAccess:
    def __init__(
        self,
        policy: AddressPolicy,
        orchestrator_urls: Sequence[str],
        fleet_headers: dict[str, str],
        read_timeout_sec: float,
        keep_bytes: int,
        reconnect_delay_max_sec: int = 4,
    ) -> None:
        self.policy = policy
        self.orchestrator_urls = [url.rstrip("/") for url in orchestrator_urls]
        self.fleet_headers = fleet_headers
        self.read_timeout_sec = read_timeout_sec
        self.keep_bytes = keep_bytes
        self.reconnect_delay_max_sec = reconnect_delay_max_sec
        self._stack = contextlib.AsyncExitStack()
        self.media: RangeProxy | None = None
        self.uploads: RangeProxy | None = None
        self._uploads_http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> MediaAccess:
        timeout = httpx.Timeout(self.read_timeout_sec, connect=min(10.0, self.read_timeout_sec))
        media_http = await self._stack.enter_async_context(media_client(self.policy, timeout))
        self.media = await self._stack.enter_async_context(self._proxy(media_http))
        # The orchestrators' addresses come from this worker's settings, not from a request.
        uploads_http = httpx.AsyncClient(
            transport=OrchestratorFailover(self.orchestrator_urls, httpx.AsyncHTTPTransport()),
            headers=self.fleet_headers,
            timeout=timeout,
            trust_env=False,
        )
        self._uploads_http = await self._stack.enter_async_context(uploads_http)
        self.uploads = await self._stack.enter_async_context(self._proxy(uploads_http))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._stack.aclose()
        self.media = self.uploads = self._uploads_http = None

    def _proxy(self, http: httpx.AsyncClient) -> RangeProxy:
        return RangeProxy(
            http, keep_bytes=self.keep_bytes, reconnect_delay_max_sec=self.reconnect_delay_max_sec
        )

    async def source(self, request: ChunkRequest | SilenceRequest) -> tuple[RangeProxy, str]:
        """The proxy to read the request's media through, and the URL to read."""
        assert self.media is not None and self.uploads is not None, "not started"
        if request.upload_id is None:
            assert request.media_url is not None
            return self.media, request.media_url
        return self.uploads, await self.upload_url(request.upload_id)

    async def upload_url(self, upload_id: str) -> str:
        """The upload's URL, once an orchestrator has answered for it."""
        assert self._uploads_http is not None, "not started"
        url = f"{ORCHESTRATORS_BASE}/internal/uploads/{upload_id}"
        try:
            headers = {"Range": "bytes=0-0", "Accept-Encoding": "identity"}
            async with self._uploads_http.stream("GET", url, headers=headers) as response:
                status = response.status_code
                content = await response.aread() if status >= 400 else b""
                served_by = response.extensions.get("orchestrator", ORCHESTRATORS_BASE)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise UpstreamUnavailableError(
                f"no orchestrator could be reached for upload {upload_id} ({exc}); "
                f"check {ORCHESTRATORS_SETTING}",
                retry_after_sec=1,
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailableError(
                f"an orchestrator failed while upload {upload_id} was checked "
                f"({type(exc).__name__}); check {ORCHESTRATORS_SETTING}",
                retry_after_sec=1,
            ) from exc
        if status < 400:
            return url
        if status == 401:
            refusal = error_from_body(status, content, source="the orchestrator").message
            raise UpstreamError(
                f"the orchestrator at {served_by} refused this worker's fleet credential "
                f"({refusal}); CHUNK_WORKER_FLEET_SECRET must be the fleet's secret"
            )
        if status in (404, 422):
            raise MediaUnavailableError(
                f"upload {upload_id} is not at the orchestrator (its job has ended)",
                param="upload_id",
            )
        raise UpstreamError(f"the orchestrator at {served_by} answered HTTP {status} for an upload")
