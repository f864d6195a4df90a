"""The probe's file: a media URL as a seekable file over range requests, for PyAV."""

from __future__ import annotations

import io
from typing import Any

import httpx

from shared.media_host.deadline import Deadline
from shared.media_host.failures import status_error, transfer_retries, transport_error


class MediaFile(io.RawIOBase):
    """A media URL as a seekable, read-only file (range requests, read ahead in blocks), so
    PyAV can probe it without opening the URL itself. With a `deadline` (give the client the
    same one), every response is streamed and checked against it as each piece arrives, so a
    host that drips a byte at a time can't hold the reader past it."""

    def __init__(
        self,
        client: httpx.Client,
        url: str,
        block: int = 256 * 1024,
        deadline: Deadline | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.url = url
        self.block = block
        self.deadline = deadline
        self.position = 0
        self.size: int | None = None
        self._buffer = b""
        self._buffer_start = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self.position = offset
        elif whence == io.SEEK_CUR:
            self.position += offset
        else:
            self.position = (self._size() or 0) + offset
        return self.position

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        wanted = len(view)
        if wanted == 0:
            return 0
        start = self.position - self._buffer_start
        if not 0 <= start < len(self._buffer) or start + wanted > len(self._buffer):
            self._fill(self.position, max(wanted, self.block))
            start = 0
        data = self._buffer[start : start + wanted]
        view[: len(data)] = data
        self.position += len(data)
        return len(data)

    def _fill(self, offset: int, count: int) -> None:
        if self.size is not None and offset >= self.size:
            self._buffer, self._buffer_start = b"", offset
            return
        headers = {"Range": f"bytes={offset}-{offset + count - 1}", "Accept-Encoding": "identity"}
        try:
            for attempt in transfer_retries():
                with attempt:
                    status, content_range, body = self._get(headers, count)
        except httpx.HTTPError as exc:
            if self.deadline is not None and self.deadline.passed:
                raise self.deadline.error() from exc
            raise transport_error(exc) from exc
        if status == 416:
            self._buffer, self._buffer_start = b"", offset
            return
        if status != 206:
            raise status_error(status)
        total = content_range.rpartition("/")[2]
        if total.isdigit():
            self.size = int(total)
        self._buffer, self._buffer_start = body, offset

    def _get(self, headers: dict[str, str], count: int) -> tuple[int, str, bytes]:
        """(status, Content-Range, body) of one request for `count` bytes, the body checked
        against the deadline piece by piece and cut at `count`: a host that sends more than
        the range it was asked for (an endless body) can't fill the orchestrator's memory."""
        if self.deadline is not None:
            self.deadline.check()
        with self.client.stream("GET", self.url, headers=headers) as response:
            if response.status_code != 206:
                return response.status_code, "", b""
            body = bytearray()
            for piece in response.iter_bytes():
                body += piece[: count - len(body)]
                if len(body) >= count:
                    break  # the rest, if the host sends more, is never read
                if self.deadline is not None:
                    self.deadline.check()
            return 206, response.headers.get("content-range", ""), bytes(body)

    def _size(self) -> int | None:
        if self.size is None:
            self._fill(0, 1)
        return self.size
