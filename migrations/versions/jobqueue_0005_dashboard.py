"""The dashboard: worker-process registry, a job's trace context, the bundle-completion index.

Revision ID: jobqueue_0005
Revises: jobqueue_0004
"""

from pathlib import Path

from alembic import op

from jobworker_pg._migrate import run_sql_file

revision = "jobqueue_0005"
down_revision: str | None = "jobqueue_0004"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None
# The script upgrade() runs; install_schema runs it too (jobworker_pg._chain).
UPGRADE_SQL = "0005_dashboard.sql"


def upgrade() -> None:
    run_sql_file(Path(__file__).parent / "sql" / UPGRADE_SQL)


def downgrade() -> None:
    op.execute("drop table if exists worker.worker_process")
    op.execute("drop index if exists worker.job_bundle_completion_idx")
    op.execute("drop index if exists worker.job_failed_idx")
    op.execute("alter table worker.job drop column if exists trace_context")
