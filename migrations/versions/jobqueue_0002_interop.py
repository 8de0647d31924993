"""go-jobqueue on the same database: bundles counted in statements, not triggers.

Also: bundles of 0 jobs, cancelled jobs marked started, attempts and errors kept for
go-jobqueue's writes, no wake-up for a retry before it is due, bundle handler
registrations with retry count and last-seen time, self-contained completion jobs.

Revision ID: jobqueue_0002
Revises: jobqueue_0001
"""

from pathlib import Path

from jobworker_pg._migrate import run_sql_file

revision = "jobqueue_0002"
down_revision: str | None = "jobqueue_0001"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None
# The script upgrade() runs; install_schema runs it too (jobworker_pg._chain).
UPGRADE_SQL = "0002_interop.sql"
DOWNGRADE_SQL = "0002_interop_downgrade.sql"


def upgrade() -> None:
    run_sql_file(Path(__file__).parent / "sql" / UPGRADE_SQL)


def downgrade() -> None:
    # Then 0001's script (idempotent: its tables and indexes exist) puts back its functions
    # and its delete trigger.
    run_sql_file(Path(__file__).parent / "sql" / DOWNGRADE_SQL)
    run_sql_file(Path(__file__).parent / "sql" / "0001_worker.sql")
