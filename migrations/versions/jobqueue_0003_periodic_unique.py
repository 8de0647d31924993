"""Unique jobs and periodic jobs: worker.job.unique_key with its partial unique index,
worker.job.scheduled_for, and the table worker.schedule.

Revision ID: jobqueue_0003
Revises: jobqueue_0002
"""

from pathlib import Path

from alembic import op

from jobworker_pg._migrate import run_sql_file

revision = "jobqueue_0003"
down_revision: str | None = "jobqueue_0002"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None
# The script upgrade() runs; install_schema runs it too (jobworker_pg._chain).
UPGRADE_SQL = "0003_periodic_unique.sql"


def upgrade() -> None:
    run_sql_file(Path(__file__).parent / "sql" / UPGRADE_SQL)


def downgrade() -> None:
    op.execute("drop table if exists worker.schedule")
    op.execute("drop index if exists worker.job_unique_key_created_idx")
    op.execute("drop index if exists worker.job_unique_key_idx")
    op.execute("alter table worker.job drop column if exists scheduled_for")
    op.execute("alter table worker.job drop column if exists unique_key")
