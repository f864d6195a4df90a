"""Uploads: media sent with the request, streamed to the media store, served back with ranges.

    client ──multipart──> receive(): the file part is written to <store>/<id> as it arrives
                          (never held in memory; the size cap and free disk are checked first
                          and while writing); other fields are kept (small, capped)
    workers <──GET /internal/uploads/<id> (Range, the fleet credential)── serve(): the file, or
                          the range from the database (another replica received it)
    the job ends (or fails, or its client leaves) ──> release() or remove(); start-up ──> sweep()

The orchestrator checks and probes an upload at its own URL (`url()`), like any media URL;
the workers are sent its id and read it from their `CHUNK_WORKER_ORCHESTRATOR_URLS`. The
internal route wants the fleet credential (shared/fleet.py), and serves nothing that wasn't
uploaded for a running job.

Several replicas (PostgreSQL): the workers reach the orchestrators through one address, so a
worker's read may land on any replica. An upload is also kept in the database (an async job's
with its job, jobs/store.py; a synchronous job's for its request's life), and a replica asked for
one it does not have answers the range from the blocks that hold it (`serve`): nothing is copied
to its disk, and the request waits for no more than the bytes it asked for. An async job's file
goes from the receiving replica once its job is written: every replica reads it the same way.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from shared.errors import (
    BadRequestError,
    InsufficientStorageError,
    MediaUnavailableError,
    PayloadTooLargeError,
)

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

logger = logging.getLogger(__name__)

_ID = re.compile(r"^[0-9a-f]{32}$")
_MAX_FIELD_BYTES = 64 * 1024
_REFERENCE_BYTES = 3 * 1024 * 1024
"""A known speaker's reference clip as a data URL: 10 s of 48 kHz stereo 16-bit WAV (what a
recorder or a browser makes) is 2.6 MB, of 16 kHz mono WAV 427 KB."""
_FIELD_BYTES = {
    "known_speaker_references[]": _REFERENCE_BYTES,
    "known_speaker_references": _REFERENCE_BYTES,
    "params": 8 * _REFERENCE_BYTES + _MAX_FIELD_BYTES,  # the JSON params may carry 8 of them
}
_MAX_FORM_BYTES = 8 * _REFERENCE_BYTES + 16 * _MAX_FIELD_BYTES
"""Every field but the file together."""
_MAX_FIELDS = 64
_OCTETS = "application/octet-stream"
_RANGE = re.compile(r"\s*bytes\s*=\s*([0-9]{0,19})\s*-\s*([0-9]{0,19})\s*", re.IGNORECASE)


@dataclass
class Upload:
    id: str
    path: Path
    size: int = 0
    filename: str | None = None


@dataclass
class UploadForm:
    """A parsed multipart request: the file (if any) on disk, every other field in memory."""

    upload: Upload | None
    fields: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None


class UploadSource(Protocol):
    """Where uploads are kept for every replica (the job table, PostgreSQL)."""

    async def upload_size(self, upload_id: str) -> int | None: ...

    def read_upload(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]: ...

    async def keep_upload(self, upload_id: str, path: Path) -> None: ...

    async def drop_upload(self, upload_id: str) -> None: ...


class MediaStore:
    def __init__(
        self,
        root: Path,
        internal_url: str,
        max_upload_bytes: int,
        min_free_bytes: int,
        source: UploadSource | None = None,
    ) -> None:
        self.root = root
        self.internal_url = internal_url.rstrip("/")
        self.max_upload_bytes = max_upload_bytes
        self.min_free_bytes = min_free_bytes
        self.source = source

    def sweep(self, older_than_sec: float = 0.0, keep: Collection[str] = ()) -> int:
        """Remove uploads left behind (by a crash), except `keep`: those of async jobs that
        have not finished, which resume after the restart. With a shared source nothing here
        is kept: the database holds every upload an unfinished job needs."""
        self.root.mkdir(parents=True, exist_ok=True)
        removed = 0
        cutoff = time.time() - older_than_sec
        for path in self.root.iterdir():
            if path.name in keep and self.source is None:
                continue
            if _ID.match(path.name.removesuffix(".part")) and path.stat().st_mtime <= cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        if removed:
            logger.info("removed %d uploads left from an earlier run", removed)
        return removed

    async def keep_for_request(self, upload: Upload | None) -> None:
        """A synchronous job's upload, kept for every replica too (the workers' reads go to
        any of them) until `release`."""
        if upload is not None and self.source is not None:
            await self.source.keep_upload(upload.id, upload.path)

    async def release(self, upload: Upload | None) -> None:
        """The end of a synchronous job's upload: here and, if kept, for every replica."""
        self.remove(upload)
        if upload is not None and self.source is not None:
            await self.source.drop_upload(upload.id)

    def url(self, upload: Upload) -> str:
        """Where this orchestrator reads the upload back (range check, probe)."""
        return self.url_of(upload.id)

    def url_of(self, upload_id: str) -> str:
        return f"{self.internal_url}/internal/uploads/{upload_id}"

    async def serve(self, upload_id: str, range_header: str | None) -> Response | None:
        """The upload for a reader (a worker, this orchestrator's probe), ranges and all: this
        store's file, or else the range asked for, read from the blocks the database keeps
        (another replica received it); None: no such upload here or there."""
        path = self.path_of(upload_id)
        if path is not None:
            return FileResponse(path, media_type=_OCTETS)
        if self.source is None or not _ID.match(upload_id):
            return None
        size = await self.source.upload_size(upload_id)
        if size is None:
            return None
        return ranged_response(
            size, range_header, lambda start, end: self._read(upload_id, start, end)
        )

    async def _read(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        assert self.source is not None
        position = start
        async for data in self.source.read_upload(upload_id, start, end):
            position += len(data)
            yield data
        if position != end:  # its job ended meanwhile: the answer must not look complete
            raise MediaUnavailableError(
                f"upload {upload_id} was removed while it was read (its job has ended)",
                param="upload_id",
            )

    def path_of(self, upload_id: str) -> Path | None:
        if not _ID.match(upload_id):
            return None
        path = self.root / upload_id
        return path if path.is_file() else None

    def remove(self, upload: Upload | str | None) -> None:
        """Removes an upload's file (by the upload or its id; its `.part` too), whatever ended
        it: its job, a refused or failed request, a hand-over to the database (`sweep` removes,
        at start, what an earlier run left); `release` also drops what the database kept of it."""
        upload_id = upload.id if isinstance(upload, Upload) else upload
        if upload_id is not None and _ID.match(upload_id):
            path = self.root / upload_id
            path.unlink(missing_ok=True)
            path.with_suffix(".part").unlink(missing_ok=True)

    async def receive(self, request: Request, file_field: str = "file") -> UploadForm:
        """Parse a multipart/form-data request, streaming `file_field` to the store."""
        content_type, options = parse_options_header(request.headers.get("content-type", ""))
        if content_type != b"multipart/form-data" or b"boundary" not in options:
            raise BadRequestError(
                "send the media as multipart/form-data with a `file` field", param=file_field
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_upload_bytes + 1_000_000:
            raise self._too_large()
        self._check_free_space(int(declared) if declared and declared.isdigit() else 0)
        receiver = _Receiver(self, file_field)
        parser = MultipartParser(options[b"boundary"], receiver.callbacks())
        try:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
            return receiver.result()
        except MultipartParseError as exc:
            receiver.discard()
            raise BadRequestError(
                f"the multipart body is malformed ({exc}); send it as a form with a `file`",
                param=file_field,
            ) from None
        except BaseException:
            receiver.discard()
            raise

    def _check_free_space(self, incoming: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        if free - max(incoming, 0) < self.min_free_bytes:
            raise InsufficientStorageError(
                f"the media store has {free // 1_000_000} MB free and keeps at least "
                f"{self.min_free_bytes // 1_000_000} MB (ORCHESTRATOR_UPLOAD_MIN_FREE_MB); "
                "try again later or send a media URL",
                retry_after_sec=30,
            )

    def _too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"the upload is larger than {self.max_upload_bytes // 1_000_000} MB "
            "(ORCHESTRATOR_MAX_UPLOAD_MB); send a media URL instead",
            param="file",
        )


def ranged_response(
    size: int, range_header: str | None, read: Callable[[int, int], AsyncIterator[bytes]]
) -> Response:
    """The answer to a GET of `size` bytes that `read(start, end)` streams: 206 with the
    range and the total size, 200 with everything when no range was asked for, 416 (with the
    size) when the range starts past the end, as Starlette's FileResponse answers for a file."""
    headers = {"Accept-Ranges": "bytes"}
    if range_header is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(read(0, size), media_type=_OCTETS, headers=headers)
    span = byte_range(range_header, size)
    if span is None:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(read(start, end), 206, headers, media_type=_OCTETS)


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """`[start, end)` of a one-range `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`),
    its end cut to `size`; None when it starts at or past the end (or asks for the last 0
    bytes): unsatisfiable. Anything else is a 400 that says what to send."""
    match = _RANGE.fullmatch(header)
    first, last = match.groups() if match else ("", "")
    if not (first or last) or (first and last and int(last) < int(first)):
        raise BadRequestError(
            f"Range {header[:100]!r} is not one byte range; send bytes=a-b, bytes=a- or bytes=-n",
            param="Range",
        )
    if not first:
        start, end = max(size - int(last), 0), size
        return (start, end) if int(last) > 0 and size > 0 else None
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    return (start, end) if start < size else None


class _Receiver:
    """Multipart parser callbacks: one part at a time, the file part written to disk."""

    def __init__(self, store: MediaStore, file_field: str) -> None:
        self.store = store
        self.file_field = file_field
        self.form = UploadForm(upload=None)
        self._headers: dict[bytes, bytes] = {}
        self._header_field = b""
        self._header_value = b""
        self._name: str | None = None
        self._value = bytearray()
        self._file: IO[bytes] | None = None
        self._fields = 0
        self._form_bytes = 0
        self._closed = False
        """The closing boundary came: the body was sent whole."""

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers, self._name, self._value = {}, None, bytearray()

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if self._name == self.file_field and filename is not None:
            if self.form.upload is not None:
                raise BadRequestError("send one file per request", param=self.file_field)
            upload_id = secrets.token_hex(16)
            path = self.store.root / upload_id
            self.form.upload = Upload(upload_id, path, filename=filename.decode("utf-8", "replace"))
            self._file = path.with_suffix(".part").open("wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            upload = self.form.upload
            assert upload is not None
            upload.size += end - start
            if upload.size > self.store.max_upload_bytes:
                raise self.store._too_large()
            self._file.write(data[start:end])
            return
        self._value += data[start:end]
        self._form_bytes += end - start
        if len(self._value) > _FIELD_BYTES.get(self._name or "", _MAX_FIELD_BYTES):
            raise self._too_long()
        if self._form_bytes > _MAX_FORM_BYTES:
            raise BadRequestError("the form's fields are too long together", param=self._name)

    def _too_long(self) -> BadRequestError:
        name = self._name or ""
        if name.startswith("known_speaker_references"):
            index = len(self.form.fields.get(name, []))
            return BadRequestError(
                f"known speaker reference {index} is over {_REFERENCE_BYTES // 2**20} MB as a "
                "data URL; give 2-10 s of the speaker alone (10 s of 16 kHz mono WAV is 0.4 MB)",
                param=f"known_speaker_references[{index}]",
            )
        limit = _FIELD_BYTES.get(name, _MAX_FIELD_BYTES) // 1024
        return BadRequestError(f"form field {name!r} is over {limit} KB", param=name)

    def _part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            upload = self.form.upload
            assert upload is not None
            upload.path.with_suffix(".part").rename(upload.path)
            return
        self._fields += 1
        if self._fields > _MAX_FIELDS:
            raise BadRequestError("too many form fields")
        if self._name:
            self.form.fields.setdefault(self._name, []).append(
                self._value.decode("utf-8", "replace")
            )

    def _end(self) -> None:
        self._closed = True

    def result(self) -> UploadForm:
        if self._file is not None:
            raise BadRequestError("the upload ended before its file did", param=self.file_field)
        if not self._closed:  # python-multipart's finalize() does not check it
            raise BadRequestError(
                "the multipart body is malformed (it ends before its closing boundary); "
                "send the whole form",
                param=self.file_field,
            )
        return self.form

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.store.remove(self.form.upload)
