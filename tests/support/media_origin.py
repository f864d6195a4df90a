"""An in-memory media host for httpx.MockTransport (ranges, drops, byte counts): what the
worker's media code is tested against without a socket."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

URL = "https://media.example/podcast.mp3?X-Signature=secret"


@dataclass
class Origin:
    """An in-memory media host for httpx.MockTransport: honours single ranges, counts bytes."""

    data: bytes
    honour_range: bool = True
    status: int | None = None
    fail_after: int | None = None
    """Close the body after this many bytes (every time): a host that vanishes mid-file."""
    cut_every: int | None = None
    """Reset each response after this many bytes of it: a link that drops now and then."""
    requests: list[tuple[int, int]] = field(default_factory=list)
    sent: int = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.status is not None:
            return httpx.Response(self.status, content=b"nope")
        size = len(self.data)
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("range", ""))
        if not match or not self.honour_range:
            first, last, status, headers = 0, size - 1, 200, {}
        else:
            first = int(match.group(1))
            if first >= size:
                return httpx.Response(416, headers={"content-range": f"bytes */{size}"})
            last = min(size - 1, int(match.group(2))) if match.group(2) else size - 1
            status, headers = 206, {"content-range": f"bytes {first}-{last}/{size}"}
        self.requests.append((first, last))
        headers["content-length"] = str(last - first + 1)
        return httpx.Response(status, headers=headers, stream=self.body(first, last))

    def body(self, first: int, last: int) -> httpx.AsyncByteStream:
        origin = self

        class Body(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                position = first
                while position <= last:
                    end = min(last + 1, position + 4096)
                    if origin.fail_after is not None and end > origin.fail_after:
                        raise httpx.ReadError("connection reset by peer")
                    if origin.cut_every is not None and end - first > origin.cut_every:
                        raise httpx.ReadError("connection reset by peer")
                    origin.sent += end - position
                    yield origin.data[position:end]
                    position = end

        return Body()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))
