"""The job store's typed records: how a job's end becomes the columns the store writes."""

from __future__ import annotations

import pytest

from services.orchestrator.jobs.records import JobEnd
from services.orchestrator.jobs.tables import jobs
from shared.schemas import JobStatus


def test_a_job_end_writes_only_what_it_has() -> None:
    succeeded = JobEnd(JobStatus.SUCCEEDED, result='{"segments": []}', done_sec=12.5)
    assert succeeded.columns() == {"result": '{"segments": []}', "done_sec": 12.5}
    failed = JobEnd(JobStatus.FAILED, error='{"code": "media_unavailable"}')
    assert failed.columns() == {"error": '{"code": "media_unavailable"}'}
    assert JobEnd(JobStatus.CANCELLED).columns() == {}


def test_a_job_end_names_only_columns_of_the_jobs_table() -> None:
    every = JobEnd(JobStatus.SUCCEEDED, result="{}", done_sec=1.0, error="{}")
    assert set(every.columns()) <= set(jobs.c.keys())


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING])
def test_a_job_cannot_end_queued_or_running(status: JobStatus) -> None:
    with pytest.raises(ValueError, match="succeeded, failed or cancelled"):
        JobEnd(status)
