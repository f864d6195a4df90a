"""The chunk worker's loopback range proxy: FFmpeg reads every media URL through it.

FFmpeg alone re-reads a file's whole index for every window (622 KB of moov per window of a
2 h m4a) and an abandoned request keeps streaming until its buffers fill, so a whole file cost
1.9-3.2x its size. Through this proxy each worker keeps the head and tail of each file and asks
the host for little more than FFmpeg actually reads: 1.13-1.18x (`make bench-media`).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from shared.errors import MediaUnavailableError, RangeNotSupportedError, WhisperfleetError
from shared.media_host import status_error, transfer_retries, transport_error
from shared.retries import RetrySchedule

READAHEAD_DIVISOR = 8
"""The proxy asks the origin for at most 1/8 more than a response has delivered (and at
least a page): little is wasted when FFmpeg stops, and runs still grow geometrically."""


@dataclass
class ProxyLease:
    """One PcmSource's use of the proxy: its loopback URL and what the origin did."""

    url: str
    token: str
    local_url: str
    error: WhisperfleetError | None = None
    upstream_bytes: int = 0


@dataclass
class _File:
    size: int | None = None
    since: float = field(default_factory=time.monotonic)
    """When its kept pages were first fetched (they are dropped after `keep_sec`)."""
    used: float = field(default_factory=time.monotonic)


_PageResult = bytes | WhisperfleetError


@dataclass
class _Run:
    """Pages `first...` of a lease's file, asked of the origin in one or more tries."""

    lease: ProxyLease
    first: int
    futures: list[asyncio.Future[_PageResult]]
    index: int = -1
    """The first page not yet resolved."""
    buffer: bytearray = field(default_factory=bytearray)
    """What the last try sent past `index`'s start (less than a page)."""

    def __post_init__(self) -> None:
        self.index = self.first

    @property
    def end(self) -> int:
        return self.first + len(self.futures)

    def future(self, index: int) -> asyncio.Future[_PageResult]:
        return self.futures[index - self.first]


_RANGE_HEADER = re.compile(rb"bytes=(\d+)-(\d*)")
_CONTENT_RANGE_SIZE = re.compile(r"/(\d+)\s*$")


class RangeProxy:
    """The worker's loopback range proxy: FFmpeg reads every media URL through it.

        FFmpeg ──GET Range──> 127.0.0.1:port/<lease> ──> kept page? (head and tail of each
                                                    │    file: headers, moov, Ogg's end)
                                                    └──> a run of missing pages from the
                                                         origin (shared.media_host:
                                                         guarded, TLS verified)

    On its own, FFmpeg asks the origin for fixed-size ranges, and whatever it doesn't read of
    one when it seeks (Ogg/FLAC bisect, MP4 jumps from moov to mdat) or stops is sent anyway;
    and it re-reads the file's index for every window. Through the proxy the origin is asked
    only for what FFmpeg reads: a run starts at one page and grows with what the response has
    delivered (by at most 1/8, up to `max_run_bytes`), and the sockets to FFmpeg are kept small
    so that back-pressure shows what FFmpeg really reads. Pages in the first and last
    `edge_bytes` (or 2 %) of each file, where headers and indexes live, are kept for the next
    window (LRU, `keep_bytes` in all, `keep_sec` at most); other pages stay a little while
    (`recent_bytes`), for seeks that re-read what they just probed. A transfer the origin
    cuts is resumed from the first missing page (`shared.retries`, reconnecting while the wait
    is at most `reconnect_delay_max_sec`, afresh whenever a try got somewhere, so a host that
    drops every few MB costs little); a final failure is
    recorded on the lease, so `PcmSource` reports the origin's own error rather than FFmpeg's
    view of it. `benchmarks/bench_media.py` measures the
    difference: 1.13-1.20x the file size for a whole 2 h file against 1.9-3.0x without it.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        page_bytes: int = 4096,
        max_run_bytes: int = 1 << 20,
        edge_bytes: int = 4 << 20,
        keep_bytes: int = 32 << 20,
        keep_sec: float = 1800.0,
        recent_bytes: int = 1 << 20,
        reconnect_delay_max_sec: int = 4,
    ) -> None:
        self.http = http
        self.recent_bytes = recent_bytes
        self.page_bytes = page_bytes
        self.max_run_pages = max(1, max_run_bytes // page_bytes)
        self.edge_bytes = edge_bytes
        self.keep_bytes = keep_bytes
        self.keep_sec = keep_sec
        self.retries = RetrySchedule.reconnecting(reconnect_delay_max_sec)
        self.upstream_bytes = 0
        """Bytes received from origins, all leases together."""
        self.port = 0
        self._server: asyncio.Server | None = None
        self._leases: dict[str, ProxyLease] = {}
        self._files: dict[str, _File] = {}
        self._kept: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._kept_bytes = 0
        self._recent: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._recent_bytes = 0
        self._expired_at = 0.0
        self._inflight: dict[tuple[str, int], asyncio.Future[_PageResult]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._serving: set[asyncio.Task[object]] = set()

    async def __aenter__(self) -> RangeProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def lease(self, url: str) -> ProxyLease:
        """A loopback URL for `url`, valid until `release`."""
        token = secrets.token_hex(8)
        lease = ProxyLease(url, token, f"http://127.0.0.1:{self.port}/{token}")
        self._leases[token] = lease
        return lease

    def release(self, lease: ProxyLease) -> None:
        self._leases.pop(lease.token, None)

    async def settle(self) -> None:
        """Wait until no connection is served and no origin fetch is in flight."""
        while pending := self._tasks | self._serving:
            await asyncio.wait(pending)

    async def read(self, url: str, offset: int, count: int) -> bytes:
        """Up to `count` bytes of `url` from `offset`, through the cache (for sniffing)."""
        lease = self.lease(url)
        try:
            data = bytearray()
            index = offset // self.page_bytes
            while len(data) < count:
                page = await self._page(lease, index, 1)
                if isinstance(page, WhisperfleetError):
                    raise page
                start = offset - index * self.page_bytes if not data else 0
                data += page[start:]
                if len(page) < self.page_bytes:
                    break  # end of file
                index += 1
            return bytes(data[:count])
        finally:
            self.release(lease)

    # ---- serving FFmpeg

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.page_bytes)
        writer.transport.set_write_buffer_limits(high=0)
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        try:
            while await self._respond(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # FFmpeg went away: what every finished or cancelled window does
        except RuntimeError:
            # uvloop refuses writes on a transport FFmpeg closed between our check and the
            # write ("the handler is closed"): the same departure, not a failure.
            if not writer.transport.is_closing():
                raise
        except asyncio.CancelledError:  # a run this response awaited was cancelled
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection should close."""
        request_line = await reader.readline()
        if not request_line:
            return False
        headers: dict[bytes, bytes] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        method, _, rest = request_line.partition(b" ")
        token = rest.split(b" ", 1)[0].decode("latin-1").lstrip("/")
        lease = self._leases.get(token)
        if lease is None or method != b"GET":
            await self._head(writer, "404 Not Found", 0, close=True)
            return False
        match = _RANGE_HEADER.fullmatch(headers.get(b"range", b""))
        first = int(match.group(1)) if match else 0
        page = await self._page(lease, first // self.page_bytes, 1)
        if isinstance(page, WhisperfleetError):
            lease.error = lease.error or page
            missing = isinstance(page, MediaUnavailableError)
            await self._head(writer, "404 Not Found" if missing else "502 Bad Gateway", 0, True)
            return False
        size = self._file(lease.url).size
        if size is not None and first >= size:
            await self._head(writer, "416 Range Not Satisfiable", 0, False,
                             f"Content-Range: bytes */{size}")  # fmt: skip
            return True
        last = size - 1 if size is not None else None
        if match and match.group(2) and last is not None:
            last = min(last, int(match.group(2)))
        close = last is None or headers.get(b"connection", b"").lower() == b"close"
        if last is None:  # the origin didn't say how long the file is
            await self._head(writer, "200 OK", None, close=True)
        elif not match:
            await self._head(writer, "200 OK", last + 1, close)
        else:
            await self._head(writer, "206 Partial Content", last - first + 1, close,
                             f"Content-Range: bytes {first}-{last}/{size}")  # fmt: skip
        complete = await self._stream(lease, writer, first, last, page)
        return complete and not close

    @staticmethod
    async def _head(
        writer: asyncio.StreamWriter, status: str, length: int | None, close: bool, *extra: str
    ) -> None:
        lines = [f"HTTP/1.1 {status}", "Accept-Ranges: bytes"]
        lines.append("Content-Type: application/octet-stream")
        if length is not None:
            lines.append(f"Content-Length: {length}")
        lines += [*extra, f"Connection: {'close' if close else 'keep-alive'}", "", ""]
        writer.write("\r\n".join(lines).encode("latin-1"))
        await writer.drain()

    async def _stream(
        self,
        lease: ProxyLease,
        writer: asyncio.StreamWriter,
        first: int,
        last: int | None,
        page: bytes,
    ) -> bool:
        """Copy `[first, last]` to FFmpeg, starting with the page holding `first` (fetched
        already); False if the origin failed.

        One page per write: a write larger than the small socket buffer waits for TCP's
        delayed acknowledgement (40 ms on loopback, whose segments are 64 KiB)."""
        position, written = first, 0
        ahead: deque[asyncio.Future[_PageResult]] = deque()  # our runs' next pages
        while True:
            piece = self._piece(page, position, last)
            if not piece:
                return True  # the origin's file ended
            if writer.transport.is_closing():
                return False  # FFmpeg has what it wanted and hung up: not an error
            writer.write(piece)
            await writer.drain()
            written += len(piece)
            position += len(piece)
            if last is not None and position > last:
                return True
            if ahead:
                result = await asyncio.shield(ahead.popleft())
            else:
                index = position // self.page_bytes
                result, more = await self._next_page(
                    lease, index, self._run_pages(index, written, last)
                )
                ahead.extend(more)
            if isinstance(result, WhisperfleetError):
                lease.error = lease.error or result
                writer.transport.abort()  # FFmpeg sees the transfer fail
                return False
            page = result

    def _run_pages(self, index: int, written: int, last: int | None) -> int:
        """How many pages to ask the origin for, from `index`: 1/8 more than the response has
        delivered so far (at least one page), up to `max_run_bytes` and the response's end."""
        run = min(self.max_run_pages, 1 + written // (READAHEAD_DIVISOR * self.page_bytes))
        if last is not None:
            run = min(run, last // self.page_bytes - index + 1)
        return max(1, run)

    def _piece(self, page: bytes, position: int, last: int | None) -> bytes:
        """The part of `page` (the one holding `position`) from `position` up to `last`."""
        offset = position % self.page_bytes
        end = len(page) if last is None else min(len(page), last + 1 - (position - offset))
        return page[offset:end]

    # ---- pages

    async def _page(self, lease: ProxyLease, index: int, run: int) -> _PageResult:
        """Page `index` of the lease's file (see `_next_page`)."""
        result, _ = await self._next_page(lease, index, run)
        return result

    async def _next_page(
        self, lease: ProxyLease, index: int, run: int
    ) -> tuple[_PageResult, list[asyncio.Future[_PageResult]]]:
        """Page `index` of the lease's file: kept, in flight, or fetched along with up to
        `run - 1` following pages, whose futures come back for the caller to read next."""
        self._expire()
        key = (lease.url, index)
        for cache in (self._kept, self._recent):
            page = cache.get(key)
            if page is not None:
                cache.move_to_end(key)
                return page, []
        future = self._inflight.get(key)
        if future is not None:
            return await asyncio.shield(future), []
        futures = self._start_run(lease, index, run)
        return await asyncio.shield(futures[0]), futures[1:]

    def _start_run(
        self, lease: ProxyLease, index: int, run: int
    ) -> list[asyncio.Future[_PageResult]]:
        size = self._file(lease.url).size
        count = 1
        while count < run:
            key = (lease.url, index + count)
            past_end = size is not None and (index + count) * self.page_bytes >= size
            if past_end or key in self._kept or key in self._recent or key in self._inflight:
                break
            count += 1
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[_PageResult]] = [loop.create_future() for _ in range(count)]
        for offset, future in enumerate(futures):
            self._inflight[(lease.url, index + offset)] = future
        task = asyncio.create_task(self._fetch_run(lease, index, futures))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return futures

    async def _fetch_run(
        self, lease: ProxyLease, first: int, futures: list[asyncio.Future[_PageResult]]
    ) -> None:
        """Fetch pages `first...` from the origin, retrying from the first missing page."""
        run = _Run(lease, first, futures)
        url = lease.url
        retries = transfer_retries(self.retries)
        try:
            try:
                async for attempt in retries:
                    with attempt:
                        await self._fetch_once(run, retries.progressed)
            except httpx.HTTPError as exc:
                raise transport_error(exc) from exc
            if run.index < run.end:  # the file ends inside this run
                self._resolve(url, run.index, run.future(run.index), bytes(run.buffer))
                for i in range(run.index + 1, run.end):
                    self._resolve(url, i, run.future(i), b"")
                run.index = run.end
        except WhisperfleetError as error:
            for i in range(run.index, run.end):
                self._resolve(url, i, run.future(i), error)
            run.index = run.end
        finally:
            for i in range(run.index, run.end):  # cancelled
                self._inflight.pop((url, i), None)
                run.future(i).cancel()

    async def _fetch_once(self, run: _Run, progressed: Callable[[], None]) -> None:
        """One request for the run's missing pages, resolving each as it arrives (and calling
        `progressed`); what is left of a last, partial page stays in `run.buffer`."""
        url, page_bytes, file = run.lease.url, self.page_bytes, self._file(run.lease.url)
        run.buffer = bytearray()
        headers = {
            "Range": f"bytes={run.index * page_bytes}-{run.end * page_bytes - 1}",
            "Accept-Encoding": "identity",
        }
        async with self.http.stream("GET", url, headers=headers, follow_redirects=True) as response:
            status = response.status_code
            if status == 416:  # past the end: an empty page
                file.size = _size_of(response, default=run.index * page_bytes)
                return
            if status >= 300:
                raise status_error(status)
            if status == 200 and run.index > 0:
                raise RangeNotSupportedError(
                    "the media host ignores HTTP range requests (it answered 200 to a range in "
                    "the middle of media_url)",
                    param="media_url",
                )
            file.size = _size_of(response, default=None)
            async for chunk in response.aiter_bytes():
                self.upstream_bytes += len(chunk)
                run.lease.upstream_bytes += len(chunk)
                run.buffer += chunk
                while len(run.buffer) >= page_bytes and run.index < run.end:
                    page = bytes(run.buffer[:page_bytes])
                    self._resolve(url, run.index, run.future(run.index), page)
                    del run.buffer[:page_bytes]
                    run.index += 1
                    progressed()
                if run.index >= run.end:
                    return
        if file.size is not None and run.index * page_bytes + len(run.buffer) < file.size:
            raise httpx.RemoteProtocolError("the response ended early")

    def _resolve(
        self, url: str, index: int, future: asyncio.Future[_PageResult], result: _PageResult
    ) -> None:
        self._inflight.pop((url, index), None)
        if not future.done():
            future.set_result(result)
        if not isinstance(result, bytes) or not result:
            return
        key = (url, index)
        if self._at_edge(url, index):
            self._kept[key] = result
            self._kept_bytes += len(result)
            while self._kept_bytes > self.keep_bytes:
                _, dropped = self._kept.popitem(last=False)
                self._kept_bytes -= len(dropped)
        else:  # seeks re-read what they just probed (Ogg and FLAC bisect several times)
            self._recent[key] = result
            self._recent_bytes += len(result)
            while self._recent_bytes > self.recent_bytes:
                _, dropped = self._recent.popitem(last=False)
                self._recent_bytes -= len(dropped)

    def _file(self, url: str) -> _File:
        file = self._files.setdefault(url, _File())
        file.used = time.monotonic()
        return file

    def _at_edge(self, url: str, index: int) -> bool:
        """Within the first or last `edge_bytes` (or 2 %) of the file: headers, indexes, moov
        atoms (about 1-5 % of an AAC file), Ogg's last pages."""
        start = index * self.page_bytes
        file = self._files.get(url)
        if file is None or file.size is None:
            return start < self.edge_bytes
        edge = max(self.edge_bytes, file.size // 50)
        return start < edge or file.size - start <= edge

    def _expire(self) -> None:
        """Drop pages kept longer than `keep_sec` (the file may have changed) and forget files
        nobody has read for that long; at most once a second."""
        now = time.monotonic()
        if now - self._expired_at < 1.0:
            return
        self._expired_at = now
        leased = {lease.url for lease in self._leases.values()}
        for url, file in list(self._files.items()):
            if now - file.since > self.keep_sec:
                file.since = now
                for cache in (self._kept, self._recent):
                    for key in [key for key in cache if key[0] == url]:
                        del cache[key]
                self._kept_bytes = sum(len(page) for page in self._kept.values())
                self._recent_bytes = sum(len(page) for page in self._recent.values())
            if now - file.used > self.keep_sec and url not in leased:
                del self._files[url]


def _size_of(response: httpx.Response, default: int | None) -> int | None:
    """The full size of the file from Content-Range (206, 416) or Content-Length (200)."""
    match = _CONTENT_RANGE_SIZE.search(response.headers.get("content-range", ""))
    if match:
        return int(match.group(1))
    length = response.headers.get("content-length", "")
    if response.status_code == 200 and length.isdigit():
        return int(length)
    return default


# -- the FFmpeg command ------------------------------------------------------------------------
