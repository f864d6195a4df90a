"""A fleet of replicas: lease tokens (fencing), attempts, uploads kept in the database.

- `jobs.lease_token`: a random token per claim; every write of a running job names it, so a
  replica that lost its claim (it stalled past its lease) can no longer touch the job.
- `jobs.attempts`: claims that did not end cleanly; past ORCHESTRATOR_JOB_MAX_ATTEMPTS a job
  fails instead of being claimed again (a file that kills its orchestrator every time).
- `jobs.upload_name`: the uploaded file's name, what the job's events show for its media.
- `upload_blocks`: an upload in fixed-size blocks (PostgreSQL), so any replica can serve it to
  the workers (the one that received it may be gone, or not the one they reach).
- an index on (owner, status): the per-key count of queued and running jobs at submit.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_token", sa.String(32)))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("upload_name", sa.String(255)))
    op.create_index("ix_jobs_owner_status", "jobs", ["owner", "status"])
    op.create_table(
        "upload_blocks",
        sa.Column("upload_id", sa.String(64), primary_key=True),
        sa.Column("block", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("upload_blocks")
    op.drop_index("ix_jobs_owner_status", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("upload_name")
        batch.drop_column("attempts")
        batch.drop_column("lease_token")
