"""Queues, job meta and timeout, queue rules (concurrency, rate limit, pause).

Revision ID: jobqueue_0004
Revises: jobqueue_0003
"""

from pathlib import Path

from alembic import op

from jobworker_pg._migrate import run_sql_file

revision = "jobqueue_0004"
down_revision: str | None = "jobqueue_0003"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None
# The script upgrade() runs; install_schema runs it too (jobworker_pg._chain).
UPGRADE_SQL = "0004_queues.sql"


def upgrade() -> None:
    run_sql_file(Path(__file__).parent / "sql" / UPGRADE_SQL)


def downgrade() -> None:
    op.execute("drop table worker.queue_start")
    op.execute("drop table worker.queue")
    op.execute(
        "create index job_available_idx on worker.job (priority desc, created_at, id)"
        " where started_at is null and stopped_at is null"
    )
    op.execute("drop index worker.job_queue_available_idx")
    op.execute(
        "alter table worker.job drop column concurrency_key, drop column timeout,"
        " drop column meta, drop column queue"
    )
