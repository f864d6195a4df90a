"""The job table's schema (SQLAlchemy Core): what the migrations make, a test holds them to it.

jobs            one row per job: request, status, progress, result or error, the claim
                (`lease_owner`, `lease_until`, `lease_token`) of the replica running it,
                `attempts` (claims that did not end cleanly), webhook outcome
job_events      every event the job produced, numbered from 0 (the SSE ids)
chunks          the plan as run: each macro chunk's span, `micro_count` once it finished
micro_results   each micro chunk's result as it arrived: what a resumed job does not redo
upload_blocks   an upload in 1 MiB blocks (PostgreSQL only: an async job's, and a running
                request's), so that every replica can serve any range of it to the workers;
                every block but the last is full, so block k holds bytes [k MiB, k+1 MiB)
"""

from __future__ import annotations

import sqlalchemy as sa

UPLOAD_BLOCK_BYTES = 1 << 20
"""Part of the schema: a range is found by block number, so changing it needs a migration."""


metadata = sa.MetaData()


def _job_id() -> sa.Column[str]:
    """The key column of every table a job owns: deleted with the job."""
    return sa.Column(
        "job_id", sa.String(40), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )


jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("upload_id", sa.String(64)),
    sa.Column("upload_name", sa.String(255)),
    sa.Column("webhook_url", sa.Text),
    sa.Column("webhook", sa.Text),
    sa.Column("done_sec", sa.Float, nullable=False, default=0.0),
    sa.Column("total_sec", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("result", sa.Text),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_until", sa.Float),
    sa.Column("lease_token", sa.String(32)),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Index("ix_jobs_owner_status", "owner", "status"),
)


job_events = sa.Table(
    "job_events",
    metadata,
    _job_id(),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)


chunks = sa.Table(
    "chunks",
    metadata,
    _job_id(),
    sa.Column("chunk_index", sa.Integer, primary_key=True),
    sa.Column("start_sec", sa.Float, nullable=False),
    sa.Column("end_sec", sa.Float, nullable=False),
    sa.Column("micro_count", sa.Integer),
)


micro_results = sa.Table(
    "micro_results",
    metadata,
    _job_id(),
    sa.Column("chunk_index", sa.Integer, primary_key=True),
    sa.Column("micro_index", sa.Integer, primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
)


upload_blocks = sa.Table(
    "upload_blocks",
    metadata,
    sa.Column("upload_id", sa.String(64), primary_key=True),
    sa.Column("block", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, server_default="0"),
)
