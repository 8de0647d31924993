"""The whole worker schema of pg-jobqueue 0.1.0 (a frozen copy of schema/worker.sql).

Revision ID: jobqueue_0001
Revises: (none: the root of the ``jobqueue`` branch)
"""

from pathlib import Path

from alembic import op

from jobworker_pg._migrate import run_sql_file

revision = "jobqueue_0001"
down_revision: str | None = None
branch_labels = ("jobqueue",)
depends_on: str | None = None
# The script upgrade() runs; install_schema runs it too (jobworker_pg._chain).
UPGRADE_SQL = "0001_worker.sql"


def upgrade() -> None:
    run_sql_file(Path(__file__).parent / "sql" / UPGRADE_SQL)


def downgrade() -> None:
    # Everything pg-jobqueue owns is in the worker schema; the version table is in public.
    op.execute("drop schema if exists worker cascade")
