"""Uploads: media sent with the request, streamed to the media store, served back with ranges.

    client ──multipart──> receive(): the file part is written to <store>/<id> as it arrives
                          (never held in memory; the size cap and free disk are checked first
                          and while writing); other fields are kept (small, capped)
    workers <──GET /internal/uploads/<id> (Range, the fleet credential)── local(): the store
    the job ends (or fails, or its client leaves) ──> remove(); start-up ──> sweep()

The orchestrator checks and probes an upload at its own URL (`url()`), like any media URL;
the workers are sent its id and read it from their `CHUNK_WORKER_ORCHESTRATOR_URLS`. The
internal route wants the fleet credential (shared/fleet.py), and serves nothing that wasn't
uploaded for a running job.

Several replicas (PostgreSQL): an async job's upload is also kept in the database with its job
(job_store.py), and `source` reads it back. A replica asked for an upload it does not have (the
one that received it died, or the job moved) writes it from there into its own store once, then
serves the file; such copies, and the received files of async jobs that ended elsewhere, are
`shared` and go at the next `sweep_copies` once their job has ended.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from shared.errors import BadRequestError, InsufficientStorageError, PayloadTooLargeError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

logger = logging.getLogger(__name__)

_ID = re.compile(r"^[0-9a-f]{32}$")
_MAX_FIELD_BYTES = 64 * 1024
_MAX_FIELDS = 64


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

    def read_upload(self, upload_id: str) -> AsyncIterator[bytes]: ...

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
        self._shared: set[str] = set()
        self._restoring: dict[str, asyncio.Task[Path | None]] = {}

    def sweep(self, older_than_sec: float = 0.0, keep: Collection[str] = ()) -> int:
        """Remove uploads left behind (by a crash), except `keep`: those of async jobs that
        have not finished, which resume after the restart."""
        self.root.mkdir(parents=True, exist_ok=True)
        removed = 0
        cutoff = time.time() - older_than_sec
        for path in self.root.iterdir():
            if path.name in keep:
                if self.source is not None:
                    self._shared.add(path.name)
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

    def share(self, upload_id: str) -> None:
        """The upload is kept in the database too: its job may end on another replica, so
        this copy goes at a `sweep_copies` after that."""
        self._shared.add(upload_id)

    @property
    def has_copies(self) -> bool:
        return bool(self._shared)

    def sweep_copies(self, keep: Collection[str]) -> int:
        """Remove shared copies whose job has ended (`keep`: the uploads the database still
        holds, for unfinished jobs and running requests)."""
        done = [upload_id for upload_id in self._shared if upload_id not in keep]
        for upload_id in done:
            self.discard(upload_id)
        return len(done)

    def url(self, upload: Upload) -> str:
        """Where this orchestrator reads the upload back (range check, probe)."""
        return self.url_of(upload.id)

    def url_of(self, upload_id: str) -> str:
        return f"{self.internal_url}/internal/uploads/{upload_id}"

    async def local(self, upload_id: str) -> Path | None:
        """The upload's file in this store; one kept in the database is written here first
        (once, however many readers ask at the same time)."""
        path = self.path_of(upload_id)
        if path is not None or self.source is None or not _ID.match(upload_id):
            return path
        task = self._restoring.get(upload_id)
        if task is None:
            task = asyncio.create_task(self._restore(upload_id))
            self._restoring[upload_id] = task
            task.add_done_callback(lambda _: self._restoring.pop(upload_id, None))
        return await asyncio.shield(task)

    async def _restore(self, upload_id: str) -> Path | None:
        assert self.source is not None
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / upload_id
        part = path.with_suffix(".part")
        size = 0
        try:
            with part.open("wb") as file:
                async for block in self.source.read_upload(upload_id):
                    file.write(block)
                    size += len(block)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        if not size:
            part.unlink(missing_ok=True)
            return None
        part.rename(path)
        self._shared.add(upload_id)
        logger.info("upload %s (%d bytes) copied from the database", upload_id, size)
        return path

    def path_of(self, upload_id: str) -> Path | None:
        if not _ID.match(upload_id):
            return None
        path = self.root / upload_id
        return path if path.is_file() else None

    def upload_of(self, upload_id: str) -> Upload | None:
        """A stored upload by id (an async job's, after a restart)."""
        path = self.path_of(upload_id)
        return Upload(upload_id, path, path.stat().st_size) if path is not None else None

    def remove(self, upload: Upload | None) -> None:
        if upload is not None:
            upload.path.unlink(missing_ok=True)
            upload.path.with_suffix(".part").unlink(missing_ok=True)
            self._shared.discard(upload.id)

    def discard(self, upload_id: str) -> None:
        """Remove an upload by id (an async job's, when it ends), if this store has it."""
        if _ID.match(upload_id):
            self.remove(Upload(upload_id, self.root / upload_id))

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

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
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
        if len(self._value) > _MAX_FIELD_BYTES:
            raise BadRequestError(f"form field {self._name!r} is too long", param=self._name)

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

    def result(self) -> UploadForm:
        if self._file is not None:
            raise BadRequestError("the upload ended before its file did", param=self.file_field)
        return self.form

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.store.remove(self.form.upload)
