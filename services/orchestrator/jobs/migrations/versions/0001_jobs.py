"""Async jobs: jobs, their events, the plan as run and finished micro chunks.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _job_id() -> sa.Column[str]:
    return sa.Column(
        "job_id", sa.String(40), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", sa.Float, nullable=False, index=True),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("upload_id", sa.String(64)),
        sa.Column("webhook_url", sa.Text),
        sa.Column("webhook", sa.Text),
        sa.Column("done_sec", sa.Float, nullable=False),
        sa.Column("total_sec", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("result", sa.Text),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_until", sa.Float),
    )
    op.create_table(
        "job_events",
        _job_id(),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_table(
        "chunks",
        _job_id(),
        sa.Column("chunk_index", sa.Integer, primary_key=True),
        sa.Column("start_sec", sa.Float, nullable=False),
        sa.Column("end_sec", sa.Float, nullable=False),
        sa.Column("micro_count", sa.Integer),
    )
    op.create_table(
        "micro_results",
        _job_id(),
        sa.Column("chunk_index", sa.Integer, primary_key=True),
        sa.Column("micro_index", sa.Integer, primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("micro_results", "chunks", "job_events", "jobs"):
        op.drop_table(table)
