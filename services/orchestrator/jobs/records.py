"""What the job store hands its callers, typed: a job's row, its events, the leases of the
replica running it, and the outcomes of claims and hand-backs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from shared.errors import ErrorDetail, WhisperfleetError
from shared.schemas import (
    JobInfo,
    JobProgress,
    JobRequest,
    JobStatus,
    TranscribeOutput,
    WebhookOutcome,
)

FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


TERMINAL_EVENTS = ("footer", "error", "cancelled")
"""The last event of every job: success, failure, cancellation."""


@dataclass(frozen=True)
class JobRecord:
    """One row of `jobs`, typed: what the store hands the queue and the routes (its fields are
    the table's columns, a test holds them together)."""

    id: str
    status: JobStatus
    created_at: float
    updated_at: float
    owner: str
    request: str
    """The `JobRequest` as JSON (`job_request()` parses it)."""
    started_at: float | None = None
    finished_at: float | None = None
    upload_id: str | None = None
    upload_name: str | None = None
    webhook_url: str | None = None
    webhook: str | None = None
    """The `WebhookOutcome` as JSON, once delivered or given up."""
    done_sec: float = 0.0
    total_sec: float | None = None
    error: str | None = None
    """The error body's `error` object as JSON, when the job failed."""
    result: str | None = None
    """The `TranscribeOutput` as JSON, when the job succeeded."""
    cancel_requested: bool = False
    lease_owner: str | None = None
    lease_until: float | None = None
    lease_token: str | None = None
    attempts: int = 0

    @classmethod
    def of(cls, row: sa.Row[Any]) -> JobRecord:
        values: dict[str, Any] = dict(row._mapping)
        return cls(**{**values, "status": JobStatus(values["status"])})

    def job_request(self) -> JobRequest:
        return JobRequest.model_validate_json(self.request)

    def info(self, with_result: bool = True) -> JobInfo:
        """The job as the API answers it (`GET /v1/jobs/{id}`, the webhook)."""
        return JobInfo(
            id=self.id,
            status=self.status,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            progress=JobProgress(done_sec=self.done_sec, total_sec=self.total_sec),
            error=ErrorDetail.model_validate_json(self.error) if self.error else None,
            result=(
                TranscribeOutput.model_validate_json(self.result)
                if with_result and self.result
                else None
            ),
            webhook_url=self.webhook_url,
            webhook=WebhookOutcome.model_validate_json(self.webhook) if self.webhook else None,
        )


@dataclass(frozen=True)
class JobEnd:
    """How a run of a job ended, as the store writes it (`JobStore.finish`): its status, and
    the result (a `TranscribeOutput` as JSON) with the seconds it covers, or the error."""

    status: JobStatus
    result: str | None = None
    done_sec: float | None = None
    error: str | None = None
    """An `ErrorDetail` as JSON."""

    def __post_init__(self) -> None:
        if self.status not in FINISHED:
            raise ValueError(f"a job ends succeeded, failed or cancelled, not {self.status}")

    def columns(self) -> dict[str, object]:
        """The `jobs` columns this end sets beside its status (those it has)."""
        values = {"result": self.result, "done_sec": self.done_sec, "error": self.error}
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class StoredEvent:
    """An event of a job as kept and sent: its number (the SSE id), name and JSON data."""

    seq: int
    name: str
    data: str


@dataclass(frozen=True)
class Lease:
    """One claim of one job: every write of the running job names it."""

    job_id: str
    owner: str
    token: str


class LeaseLost(Exception):
    """The job was claimed by another replica since `lease` was drawn: stop it, touch nothing.
    Not a WhisperfleetError: it never reaches a client."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(f"{lease.owner} no longer holds job {lease.job_id}")
        self.lease = lease


@dataclass
class Claims:
    """What one round of claiming found."""

    leases: list[Lease] = field(default_factory=list)
    exhausted: list[str] = field(default_factory=list)
    """Jobs failed instead of claimed: they had stopped their orchestrator too often."""
    cancelled: list[str] = field(default_factory=list)
    """Jobs cancelled instead of claimed: their cancel was asked for before their owner died."""


@dataclass
class HandBack:
    """What a hand-back (a graceful stop, or a restart taking back its jobs) did."""

    queued: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    """Jobs whose cancel had been asked for: ended `cancelled` (with their event), not queued."""


class CapReached(Exception):
    """The owner has its cap of queued and running jobs: nothing was written."""

    def __init__(self, active: int) -> None:
        super().__init__(f"{active} active jobs")
        self.active = active


@dataclass
class Renewal:
    cancel: set[str] = field(default_factory=set)
    """Held jobs whose cancel was requested (through any replica)."""
    lost: set[str] = field(default_factory=set)
    """Jobs this replica no longer holds: another claimed them."""


def exhausted_error(attempts: int) -> WhisperfleetError:
    return WhisperfleetError(
        f"the job stopped its orchestrator {attempts} times (crash, kill or out of memory); it "
        "is not run again (ORCHESTRATOR_JOB_MAX_ATTEMPTS)"
    )


def cancelled_event(job_id: str) -> str:
    """The data of a job's `cancelled` event."""
    return json.dumps({"id": job_id, "status": JobStatus.CANCELLED.value})
