"""The media store: multipart streamed to disk, caps, free disk, ranges back, cleanup, and
uploads another replica received, served range by range from the database."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.orchestrator.jobs.store import JobStore
from services.orchestrator.jobs.tables import UPLOAD_BLOCK_BYTES
from services.orchestrator.jobs.uploads import MediaStore, Upload, byte_range
from shared.errors import BadRequestError, MediaUnavailableError, WhisperfleetError


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


async def test_reference_clips_fit_in_their_fields_and_other_fields_stay_small(
    tmp_path: Path,
) -> None:
    """10 s of 48 kHz stereo 16-bit WAV (a recorder's, a browser's) as a data URL is 2.6 MB: it
    must fit in a reference field (and eight 10 s clips of 16 kHz in the JSON `params`), while
    other fields keep their 64 KiB cap. A reference over the cap is a 400 naming which one."""
    store = make_store(tmp_path)
    recorded = "data:audio/wav;base64," + "A" * (4 * 10 * 48_000 * 2 * 2 // 3)
    clip = "data:audio/wav;base64," + "A" * 426_672
    files = {"file": ("talk.mp3", b"ID3", "audio/mpeg")}
    async with client(store) as http:
        fits = await http.post("/upload", files=files, data={
            "known_speaker_references[]": [clip, recorded], "params": "x" * (8 * len(clip)),
        })  # fmt: skip
        too_long = await http.post(
            "/upload",
            files=files,
            data={"known_speaker_references[]": [clip, "A" * (3 * 2**20 + 1)]},
        )
        prompt = await http.post("/upload", files=files, data={"prompt": "x" * 70_000})
    assert fits.status_code == 200, fits.text
    sizes = [len(v) for v in fits.json()["fields"]["known_speaker_references[]"]]
    assert sizes == [len(clip), len(recorded)]
    for refused, field in ((too_long, "known_speaker_references[1]"), (prompt, "prompt")):
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == field
    assert "known speaker reference 1 is over 3 MB" in too_long.json()["error"]["message"]


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


async def test_a_body_without_its_closing_boundary_is_a_400_malformed_not_a_missing_file(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path)
    bodies = [
        b"--XyZ\r\nbroken",
        b'--XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n',
    ]
    headers = {"content-type": "multipart/form-data; boundary=XyZ"}
    async with client(store) as http:
        for body in bodies:
            response = await http.post("/upload", content=body, headers=headers)
            assert response.status_code == 400, body
            assert "closing boundary" in response.json()["error"]["message"]
        whole = await http.post("/upload", content=bodies[1] + b"--XyZ--\r\n", headers=headers)
    assert whole.status_code == 200
    assert whole.json()["fields"] == {"model": ["whisper-1"]}


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


# ---- uploads another replica received: ranges from the database ------------------------------

BLOCK = UPLOAD_BLOCK_BYTES
SIZE = 2 * BLOCK + 1000  # two full blocks and a partial last one


@pytest.fixture
async def blocks(tmp_path: Path) -> AsyncIterator[JobStore]:
    """The job table's upload blocks (SQLite here; the same queries run on PostgreSQL in
    tests/integration/test_job_store.py)."""
    store = JobStore.connect(f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}")
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


async def body(response: Response) -> bytes:
    assert isinstance(response, StreamingResponse)
    return b"".join([piece async for piece in response.body_iterator])  # type: ignore[misc]


RANGES = {  # Range header: bytes [start, end) it asks for
    "bytes=0-0": (0, 1),
    "bytes=0-99": (0, 100),
    f"bytes={BLOCK - 10}-{BLOCK + 9}": (BLOCK - 10, BLOCK + 10),  # across a block boundary
    f"bytes={BLOCK}-{BLOCK}": (BLOCK, BLOCK + 1),  # a block's first byte
    f"bytes={BLOCK - 1}-{BLOCK - 1}": (BLOCK - 1, BLOCK),  # a block's last byte
    f"bytes=5-{2 * BLOCK + 5}": (5, 2 * BLOCK + 6),  # three blocks, cut at both ends
    f"bytes={2 * BLOCK + 10}-": (2 * BLOCK + 10, SIZE),  # open-ended, in the partial block
    f"bytes={BLOCK // 2}-": (BLOCK // 2, SIZE),
    "bytes=-1": (SIZE - 1, SIZE),
    "bytes=-1500": (SIZE - 1500, SIZE),  # the last bytes, from two blocks
    f"bytes=-{SIZE * 3}": (0, SIZE),  # more than there is: all of it
    f"bytes={SIZE - 5}-{SIZE * 2}": (SIZE - 5, SIZE),  # an end past the end is cut to it
    "Bytes = 7 - 8": (7, 9),
}


async def test_another_replicas_upload_is_served_from_the_database_range_by_range(
    tmp_path: Path, blocks: JobStore
) -> None:
    """Each range comes back byte for byte as the file has it, with the total size, from
    the blocks alone: nothing is written to this replica's disk."""
    media = os.urandom(SIZE)
    (tmp_path / "received").write_bytes(media)
    upload_id = "ab" * 16
    await blocks.keep_upload(upload_id, tmp_path / "received")
    store = MediaStore(tmp_path / "here", "http://o:8000", 1 << 31, 0, source=blocks)
    for header, (start, end) in RANGES.items():
        response = await store.serve(upload_id, header)
        assert response is not None and response.status_code == 206, header
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{SIZE}", header
        assert response.headers["content-length"] == str(end - start), header
        assert await body(response) == media[start:end], header
    whole = await store.serve(upload_id, None)
    assert whole is not None and whole.status_code == 200
    assert whole.headers["content-length"] == str(SIZE) and await body(whole) == media
    for past_the_end in (f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"):
        refused = await store.serve(upload_id, past_the_end)
        assert refused is not None and refused.status_code == 416, past_the_end
        assert refused.headers["content-range"] == f"bytes */{SIZE}"
    assert not store.root.exists() or list(store.root.iterdir()) == []


@pytest.mark.parametrize(
    "header", ["bytes=5-4", "bytes=0-1,5-6", "bytes=-", "items=0-1", "bytes=a-b", "bytes=²-3",
               "bytes=" + "9" * 30 + "-"],
)  # fmt: skip
def test_a_range_that_is_not_one_byte_range_is_a_400_saying_what_to_send(header: str) -> None:
    with pytest.raises(BadRequestError, match="send bytes=a-b, bytes=a- or bytes=-n"):
        byte_range(header, 100)


async def test_this_replicas_own_file_is_served_from_disk_and_a_missing_upload_is_none(
    tmp_path: Path, blocks: JobStore
) -> None:
    store = MediaStore(tmp_path / "here", "http://o:8000", 1 << 20, 0, source=blocks)
    store.root.mkdir()
    (store.root / ("ab" * 16)).write_bytes(b"media")
    assert isinstance(await store.serve("ab" * 16, "bytes=0-1"), FileResponse)
    assert await store.serve("cd" * 16, "bytes=0-1") is None  # kept nowhere
    assert await store.serve("../etc/passwd", None) is None


class Vanishing:
    """An upload whose blocks are dropped after its first one was read (its job ended)."""

    async def upload_size(self, upload_id: str) -> int | None:
        return 10

    async def read_upload(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        yield b"01234"

    async def keep_upload(self, upload_id: str, path: Path) -> None: ...

    async def drop_upload(self, upload_id: str) -> None: ...


async def test_an_upload_dropped_while_it_is_read_is_not_answered_as_complete(
    tmp_path: Path,
) -> None:
    store = MediaStore(tmp_path / "here", "http://o:8000", 1 << 20, 0, source=Vanishing())
    response = await store.serve("ab" * 16, None)
    assert response is not None
    with pytest.raises(MediaUnavailableError, match="removed while it was read"):
        await body(response)


async def test_a_synchronous_jobs_upload_is_kept_for_every_replica_until_released(
    tmp_path: Path, blocks: JobStore
) -> None:
    """A request's upload goes into the shared source before its job runs (a worker's read
    may land on another replica, which serves it from there) and leaves it, and this store,
    when the request ends."""
    here = MediaStore(tmp_path / "here", "http://o:8000", 1 << 20, 0, source=blocks)
    there = MediaStore(tmp_path / "there", "http://o:8000", 1 << 20, 0, source=blocks)
    here.root.mkdir()
    upload = Upload("ab" * 16, here.root / ("ab" * 16), 5)
    upload.path.write_bytes(b"media")
    await here.keep_for_request(upload)
    served = await there.serve(upload.id, "bytes=1-")
    assert served is not None and await body(served) == b"edia"
    await here.release(upload)
    assert await blocks.upload_size(upload.id) is None and not upload.path.exists()
    assert await there.serve(upload.id, "bytes=1-") is None
    assert not there.root.exists()


def test_with_a_shared_source_the_start_up_sweep_keeps_nothing_here(
    tmp_path: Path, blocks: JobStore
) -> None:
    """An unfinished async job's upload is in the database: a file of it here (left by a
    crash between its job's insert and the file's removal) would never go."""
    upload_id = "ab" * 16
    alone = make_store(tmp_path)
    alone.root.mkdir(parents=True)
    (alone.root / upload_id).write_bytes(b"x")
    assert alone.sweep(keep={upload_id}) == 0  # SQLite: the file is the only copy
    shared = MediaStore(alone.root, "http://o:8000", 1 << 20, 0, source=blocks)
    assert shared.sweep(keep={upload_id}) == 1
    assert list(shared.root.iterdir()) == []
