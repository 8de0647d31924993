"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""

from pathlib import Path

from alembic import op

from jobworker_pg._migrate import run_sql_file

revision = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on: str | None = ${repr(depends_on)}


def upgrade() -> None:
    run_sql_file(Path(__file__).parent / "sql" / "${up_revision.removeprefix('jobqueue_')}_upgrade.sql")


def downgrade() -> None:
    op.execute("")  # the SQL that undoes upgrade()
