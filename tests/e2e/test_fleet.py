"""Two orchestrators on one PostgreSQL job table, sharing the chunk workers and the model server
(real processes, random model), with a short lease: a replica killed mid-job, a replica stopped
(SIGSTOP) past its lease and resumed, a replica that received upload jobs killed and restarted
with an empty disk, and a synchronous upload whose workers read it from the other replica
(range by range from the database: no replica writes a copy of an upload it did not receive).

For every job: it ends exactly once (one webhook), its event log is gap-free (ids 0..N, one
header, one terminal event, each segment once) and its transcript is an undisturbed run's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import sqlalchemy as sa

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.jobs.records import TERMINAL_EVENTS, JobRecord
from services.orchestrator.jobs.store import JobStore
from services.orchestrator.jobs.tables import upload_blocks
from services.stack import LocalStack, ServiceProcess, free_port
from shared.schemas import JobInfo, JobStatus, TranscribeOutput
from tests.support.coverage import assert_every_micro_chunk_once
from tests.support.media_server import MediaServer
from tests.support.postgres import PostgresServer
from tests.support.sse import job_events
from tests.support.stack import add_orchestrator, start_stack
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

LEASE_SEC = 5
PARAMS = {"macro_chunk_size_sec": 60, "micro_chunk_size_sec": 10, "language": "en"}
MEDIA = "speech_200s.mp3"
FINISHED = ("succeeded", "failed", "cancelled")
T = TypeVar("T")


@dataclass
class Fleet:
    stack: LocalStack
    database_url: str
    hooks: WebhookReceiver
    orchestrators: dict[str, ServiceProcess]
    """By instance id."""

    def other(self, instance: str) -> str:
        return next(name for name in self.orchestrators if name != instance)

    def row(self, job_id: str) -> JobRecord:
        """The job's row, straight from the job table."""

        async def get() -> JobRecord | None:
            store = JobStore.connect(
                OrchestratorSettings(database_url=self.database_url).async_database_url
            )
            try:
                return await store.get(job_id)
            finally:
                await store.close()

        found = asyncio.run(get())
        assert found is not None, job_id
        return found

    def upload_blocks(self) -> int:
        async def count() -> int:
            store = JobStore.connect(
                OrchestratorSettings(database_url=self.database_url).async_database_url
            )
            try:
                async with store.engine.connect() as connection:
                    query = sa.select(sa.func.count()).select_from(upload_blocks)
                    return int(await connection.scalar(query) or 0)
            finally:
                await store.close()

        return asyncio.run(count())


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path, postgres: PostgresServer
) -> Iterator[Fleet]:
    database_url = postgres.create_database("fleet")
    ports = free_port(), free_port()
    stack = start_stack(  # the second orchestrator inherits all but its name, port, uploads
        tmp_path_factory.mktemp("fleet"),
        model_cache_dir,
        port=ports[0],
        # The workers read uploads from the first orchestrator that answers, as from a Service.
        CHUNK_WORKER_ORCHESTRATOR_URLS=",".join(f"http://127.0.0.1:{port}" for port in ports),
        ORCHESTRATOR_DATABASE_URL=database_url,
        ORCHESTRATOR_JOB_LEASE_SEC=str(LEASE_SEC),
        ORCHESTRATOR_MAX_RUNNING_JOBS="1",
        ORCHESTRATOR_INSTANCE_ID="orch-a",
    )
    try:
        second = add_orchestrator(
            stack, "orchestrator_b", port=ports[1], ORCHESTRATOR_INSTANCE_ID="orch-b"
        )
        with WebhookReceiver() as hooks:
            orchestrators = {"orch-a": stack.service("orchestrator"), "orch-b": second}
            yield Fleet(stack, database_url, hooks, orchestrators)
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def reference(fleet: Fleet, media_server: MediaServer) -> TranscribeOutput:
    """The undisturbed transcript (the random model gives the same words everywhere)."""
    body = {"media_url": media_server.url(MEDIA), "params": PARAMS}
    response = httpx.post(f"{fleet.stack.url}/v1/transcribe", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return TranscribeOutput.model_validate(response.json())


def wait_for(what: str, probe: Callable[[], T | None], timeout_sec: float) -> T:
    deadline = time.monotonic() + timeout_sec
    while (found := probe()) is None or found is False:
        assert time.monotonic() < deadline, f"not within {timeout_sec:g} s: {what}"
        time.sleep(0.05)
    return found


@contextlib.contextmanager
def files_seen(*folders: Path) -> Iterator[set[str]]:
    """The names of every file that appears in `folders` while the block runs."""
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            for folder in folders:
                with contextlib.suppress(FileNotFoundError):
                    seen.update(path.name for path in folder.iterdir())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def upload_dir(orchestrator: ServiceProcess) -> Path:
    return Path(orchestrator.env["ORCHESTRATOR_UPLOAD_DIR"])


def submit(fleet: Fleet, orchestrator: ServiceProcess, media_server: MediaServer) -> str:
    body = {"media_url": media_server.url(MEDIA), "params": PARAMS, "webhook_url": fleet.hooks.url}
    response = httpx.post(f"{orchestrator.url}/v1/jobs", json=body, timeout=60)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def running_on(fleet: Fleet, job_id: str) -> str:
    """The instance that runs the job, once it has made progress."""

    def holder() -> str | None:
        row = fleet.row(job_id)
        return row.lease_owner if row.done_sec > 0 and row.lease_owner else None

    return wait_for(f"{job_id} running", holder, 60)


def restart(fleet: Fleet, orchestrator: ServiceProcess) -> None:
    orchestrator.stop()
    orchestrator.start()
    fleet.stack.wait_ready(120)


def kill(orchestrator: ServiceProcess) -> None:
    assert orchestrator.process is not None
    orchestrator.process.kill()  # no goodbye: its claims are left behind
    orchestrator.process.wait()


def finished(url: str, job_id: str, timeout_sec: float = 180) -> JobInfo:
    def poll() -> JobInfo | None:
        info = JobInfo.model_validate(httpx.get(f"{url}/v1/jobs/{job_id}", timeout=30).json())
        return info if info.status in FINISHED else None

    return wait_for(f"{job_id} finished", poll, timeout_sec)


def assert_ran_once(
    fleet: Fleet, url: str, job_id: str, reference: TranscribeOutput, info: JobInfo
) -> None:
    """Ended once, one gap-free event log, the undisturbed transcript."""
    assert info.status == "succeeded", info.error
    assert info.result is not None
    ours, theirs = info.result, reference
    assert [(s.start_time_sec, s.end_time_sec, s.text) for s in ours.segments] == [
        (s.start_time_sec, s.end_time_sec, s.text) for s in theirs.segments
    ]
    assert ours.macro_chunks == theirs.macro_chunks
    assert_every_micro_chunk_once(ours)
    log = job_events(url, job_id)
    names = [name for _, name, _ in log]
    assert [event_id for event_id, _, _ in log] == list(range(len(log)))
    assert names.count("header") == 1 and names[0] == "header"
    assert sum(names.count(end) for end in TERMINAL_EVENTS) == 1 and names[-1] == "footer"
    assert [data["text"] for _, name, data in log if name == "segment"] == [
        s.text for s in ours.segments
    ]
    row = fleet.row(job_id)
    assert row.lease_owner is None and row.lease_token is None
    hooks = wait_for(
        f"{job_id}'s webhook",
        lambda: [d for d in fleet.hooks.deliveries if json.loads(d.body)["id"] == job_id],
        30,
    )
    assert [json.loads(d.body)["status"] for d in hooks] == ["succeeded"]


def test_a_synchronous_upload_is_served_by_the_replica_the_workers_reach(
    fleet: Fleet, media_dir: Path, reference: TranscribeOutput
) -> None:
    """The workers read uploads from the first orchestrator that answers (a Service may send
    them to any replica): an upload sent with `/v1/transcribe` to the second is kept in the
    database for the request's life, the first answers the workers' range requests from there
    without writing a file, and it is gone from the database when the answer is out. (First in
    this module: once a replica has been killed the workers prefer the other, which would then
    serve its own upload.)"""
    receiver, reader = fleet.orchestrators["orch-b"], fleet.orchestrators["orch-a"]
    with (media_dir / MEDIA).open("rb") as file, files_seen(upload_dir(reader)) as written:
        response = httpx.post(
            f"{receiver.url}/v1/transcribe",
            files={"file": (MEDIA, file, "audio/mpeg")},
            data={"params": json.dumps(PARAMS)},
            timeout=300,
        )
    assert response.status_code == 200, response.text
    output = TranscribeOutput.model_validate(response.json())
    assert [(s.start_time_sec, s.text) for s in output.segments] == [
        (s.start_time_sec, s.text) for s in reference.segments
    ]
    ranges = re.findall(r'"GET /internal/uploads/[0-9a-f]{32} HTTP/1.1" 206', reader.log_tail(2000))
    assert len(ranges) > 1, reader.log_tail(40)  # its access log: the workers' range reads
    assert written == set()  # nothing copied to its disk
    assert fleet.upload_blocks() == 0
    assert list(upload_dir(receiver).iterdir()) == []


def test_a_replica_killed_mid_job_loses_it_to_the_other_which_finishes_it(
    fleet: Fleet, media_server: MediaServer, reference: TranscribeOutput
) -> None:
    job_id = submit(fleet, fleet.orchestrators["orch-a"], media_server)
    victim = running_on(fleet, job_id)
    survivor = fleet.other(victim)
    kill(fleet.orchestrators[victim])
    killed = time.monotonic()
    wait_for(
        "the survivor's claim", lambda: fleet.row(job_id).lease_owner == survivor, LEASE_SEC + 10
    )
    taken_after = time.monotonic() - killed
    info = finished(fleet.orchestrators[survivor].url, job_id)
    print(f"killed {victim}; {survivor} took the job {taken_after:.1f} s later")
    assert_ran_once(fleet, fleet.orchestrators[survivor].url, job_id, reference, info)
    assert fleet.row(job_id).attempts >= 2
    restart(fleet, fleet.orchestrators[victim])


def test_a_replica_stopped_past_its_lease_stops_without_writing_once_resumed(
    fleet: Fleet, media_server: MediaServer, reference: TranscribeOutput
) -> None:
    """SIGSTOP the replica running a job until the other has taken it over, then SIGCONT: the
    stalled one must stop the job at its next write or renewal, writing nothing (no duplicate
    event, no status written over the new owner's)."""
    job_id = submit(fleet, fleet.orchestrators["orch-b"], media_server)
    stalled_id = running_on(fleet, job_id)
    owner_id = fleet.other(stalled_id)
    stalled = fleet.orchestrators[stalled_id]
    assert stalled.process is not None
    pid = stalled.process.pid
    for _ in range(3):
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(
                "the takeover",
                lambda: fleet.row(job_id).lease_owner == owner_id,
                LEASE_SEC + 8,
            )
            break
        except AssertionError:  # stopped inside a transaction on the job's row: try again
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.5)
    else:
        pytest.fail("the job was never taken over from the stopped replica")
    taken = fleet.row(job_id).done_sec
    wait_for("the new owner's progress", lambda: fleet.row(job_id).done_sec > taken, 30)
    os.kill(pid, signal.SIGCONT)  # it wakes with its writes and renewals overdue
    message = f"job {job_id}: another replica holds it now"
    wait_for("the stalled replica noticing", lambda: message in stalled.log_tail(400), 30)
    info = finished(fleet.orchestrators[owner_id].url, job_id)
    time.sleep(2)  # anything the stalled replica might still write, it would have by now
    assert_ran_once(fleet, fleet.orchestrators[owner_id].url, job_id, reference, info)
    assert stalled.process.poll() is None  # it lives on, and serves
    assert httpx.get(f"{stalled.url}/readyz", timeout=10).status_code == 200


def test_upload_jobs_of_a_replica_that_died_with_its_disk_complete_elsewhere(
    fleet: Fleet, media_dir: Path, reference: TranscribeOutput
) -> None:
    """Three upload jobs sent to one replica (one runs there, one on the other, one waits);
    it is killed, its upload directory wiped (a new pod's empty volume) and it restarts: the
    uploads come from the database, wherever the jobs run, and go when they end. The
    receiver's files go as soon as their jobs are written; no replica writes one again."""
    receiver = fleet.orchestrators["orch-a"]
    uploads = upload_dir(receiver)
    job_ids = []
    for _ in range(3):
        with (media_dir / MEDIA).open("rb") as file:
            response = httpx.post(
                f"{receiver.url}/v1/jobs",
                files={"file": (MEDIA, file, "audio/mpeg")},
                data={"params": json.dumps(PARAMS), "webhook_url": fleet.hooks.url},
                timeout=60,
            )
        assert response.status_code == 202, response.text
        job_ids.append(str(response.json()["id"]))
    statuses = Counter(fleet.row(job_id).status for job_id in job_ids)
    assert statuses[JobStatus.QUEUED] >= 1, statuses
    assert fleet.upload_blocks() > 0
    assert list(uploads.iterdir()) == []  # in the database, where every replica reads them
    kill(receiver)
    shutil.rmtree(uploads)
    folders = [upload_dir(o) for o in fleet.orchestrators.values()]
    survivor = fleet.orchestrators["orch-b"]
    with files_seen(*folders) as written:
        restart(fleet, receiver)
        for job_id in job_ids:
            info = finished(survivor.url, job_id)
            assert_ran_once(fleet, survivor.url, job_id, reference, info)
    assert fleet.upload_blocks() == 0
    assert written == set()  # served from the database: no replica wrote a copy
