"""The media store: multipart streamed to disk, caps, free disk, ranges back, cleanup, and
uploads another replica received, copied from the database."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.orchestrator.uploads import MediaStore, Upload
from shared.errors import WhisperfleetError


def store_app(store: MediaStore) -> Starlette:
    """A one-route app around `MediaStore.receive` (the orchestrator's routes use it the same
    way); errors become their status and code."""

    async def receive(request: Request) -> Response:
        try:
            form = await store.receive(request)
        except WhisperfleetError as exc:
            return JSONResponse(exc.body().model_dump(), status_code=exc.status_code)
        upload = form.upload
        return JSONResponse(
            {
                "fields": form.fields,
                "upload": None
                if upload is None
                else {"id": upload.id, "size": upload.size, "filename": upload.filename},
            }
        )

    return Starlette(routes=[Route("/upload", receive, methods=["POST"])])


def client(store: MediaStore) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=store_app(store)), base_url="http://t"
    )


def make_store(tmp_path: Path, **limits: int) -> MediaStore:
    return MediaStore(
        tmp_path / "store",
        "http://orchestrator:8000",
        limits.get("max_bytes", 10_000_000),
        limits.get("min_free", 0),
    )


async def test_the_file_goes_to_disk_and_the_fields_are_kept(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    payload = os.urandom(3_000_000)
    files = {"file": ("talk.mp3", payload, "audio/mpeg")}
    data = {"model": "whisper-1", "timestamp_granularities[]": ["word", "segment"]}
    async with client(store) as http:
        response = await http.post("/upload", files=files, data=data)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fields"] == {
        "model": ["whisper-1"],
        "timestamp_granularities[]": ["word", "segment"],
    }
    upload = body["upload"]
    assert upload["size"] == len(payload) and upload["filename"] == "talk.mp3"
    path = store.path_of(upload["id"])
    assert path is not None and path.read_bytes() == payload
    assert store.url(Upload(upload["id"], path)) == (
        f"http://orchestrator:8000/internal/uploads/{upload['id']}"
    )
    store.remove(Upload(upload["id"], path))
    assert not path.exists()


async def test_an_upload_over_the_cap_is_a_413_and_leaves_nothing(tmp_path: Path) -> None:
    store = make_store(tmp_path, max_bytes=1_000_000)
    async with client(store) as http:
        response = await http.post("/upload", files={"file": ("big.wav", os.urandom(1_500_000))})
    assert response.status_code == 413
    assert "ORCHESTRATOR_MAX_UPLOAD_MB" in response.json()["error"]["message"]
    assert list(store.root.iterdir()) == []


async def test_a_full_disk_is_a_507_naming_the_setting(tmp_path: Path) -> None:
    store = make_store(tmp_path, min_free=10**18)
    async with client(store) as http:
        response = await http.post("/upload", files={"file": ("a.wav", b"RIFF")})
    assert response.status_code == 507
    assert "ORCHESTRATOR_UPLOAD_MIN_FREE_MB" in response.json()["error"]["message"]


async def test_a_body_that_is_not_multipart_is_a_400(tmp_path: Path) -> None:
    async with client(make_store(tmp_path)) as http:
        response = await http.post("/upload", json={"file": "nope"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"


async def test_a_malformed_multipart_body_is_a_400_not_a_500(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    headers = {"content-type": "multipart/form-data; boundary=XyZ"}
    async with client(store) as http:
        response = await http.post("/upload", content=b"x" * 1000, headers=headers)
    assert response.status_code == 400
    assert "malformed" in response.json()["error"]["message"]
    assert list(store.root.iterdir()) == []


async def test_a_cut_upload_leaves_nothing(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n\r\n'
        + os.urandom(100_000)
    )  # no closing boundary: the client went away mid-file
    headers = {"content-type": "multipart/form-data; boundary=XyZ"}
    async with client(store) as http:
        response = await http.post("/upload", content=body, headers=headers)
    assert response.status_code == 400
    assert list(store.root.iterdir()) == []


def test_sweep_removes_what_a_crash_left_and_nothing_else(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.root.mkdir(parents=True)
    leftovers = [store.root / ("a" * 32), store.root / (("b" * 32) + ".part")]
    for path in leftovers:
        path.write_bytes(b"x")
    keep = store.root / "README"
    keep.write_text("not an upload")
    assert store.sweep() == 2
    assert [p.name for p in store.root.iterdir()] == ["README"]


@pytest.mark.parametrize("upload_id", ["../etc/passwd", "A" * 32, "abc", ""])
def test_only_upload_ids_name_files(tmp_path: Path, upload_id: str) -> None:
    assert make_store(tmp_path).path_of(upload_id) is None


class Blocks:
    """The job table's upload blocks, in memory; counts how often each upload is read."""

    def __init__(self, uploads: dict[str, bytes]) -> None:
        self.uploads = uploads
        self.reads: dict[str, int] = {}

    async def read_upload(self, upload_id: str) -> AsyncIterator[bytes]:
        self.reads[upload_id] = self.reads.get(upload_id, 0) + 1
        data = self.uploads.get(upload_id, b"")
        for start in range(0, len(data), 4):
            await asyncio.sleep(0)  # other readers arrive meanwhile
            yield data[start : start + 4]

    async def keep_upload(self, upload_id: str, path: Path) -> None:
        self.uploads[upload_id] = await asyncio.to_thread(path.read_bytes)

    async def drop_upload(self, upload_id: str) -> None:
        del self.uploads[upload_id]


async def test_a_synchronous_jobs_upload_is_kept_for_every_replica_until_released(
    tmp_path: Path,
) -> None:
    """A request's upload goes into the shared source before its job runs (a worker's read
    may land on another replica) and leaves it, and this store, when the request ends."""
    source = Blocks({})
    here = MediaStore(tmp_path / "here", "http://o:8000", 1 << 20, 0, source=source)
    there = MediaStore(tmp_path / "there", "http://o:8000", 1 << 20, 0, source=source)
    here.root.mkdir()
    upload = Upload("ab" * 16, here.root / ("ab" * 16), 5)
    upload.path.write_bytes(b"media")
    await here.keep_for_request(upload)
    copy = await there.local(upload.id)
    assert copy is not None and copy.read_bytes() == b"media"
    await here.release(upload)
    assert source.uploads == {} and not upload.path.exists()
    assert there.sweep_copies(keep=source.uploads.keys()) == 1 and not copy.exists()


async def test_an_upload_another_replica_received_is_copied_here_once_and_served(
    tmp_path: Path,
) -> None:
    upload_id = "ab" * 16
    source = Blocks({upload_id: b"the media bytes"})
    store = MediaStore(tmp_path / "store", "http://o:8000", 1 << 20, 0, source=source)
    paths = await asyncio.gather(*(store.local(upload_id) for _ in range(5)))
    assert paths == [tmp_path / "store" / upload_id] * 5
    assert paths[0] is not None and paths[0].read_bytes() == b"the media bytes"
    assert source.reads == {upload_id: 1}
    assert await store.local(upload_id) == paths[0] and source.reads[upload_id] == 1
    assert await store.local("cd" * 16) is None  # kept nowhere: nothing written
    assert await store.local("../etc/passwd") is None
    assert sorted(p.name for p in store.root.iterdir()) == [upload_id]


async def test_shared_copies_go_once_their_job_has_ended(tmp_path: Path) -> None:
    restored, received, running = "ab" * 16, "cd" * 16, "ef" * 16
    source = Blocks({restored: b"x", running: b"y"})
    store = MediaStore(tmp_path / "store", "http://o:8000", 1 << 20, 0, source=source)
    await store.local(restored)
    await store.local(running)
    (store.root / received).write_bytes(b"z")
    store.share(received)  # an async job's upload, kept in the database too
    assert store.sweep_copies(keep={running}) == 2
    assert [p.name for p in store.root.iterdir()] == [running]
