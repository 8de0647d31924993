"""Alembic environment of pg-jobqueue's migrations: raw SQL, no models.

Everything happens in jobworker_pg._migrate.run_environment (typed and tested there).
"""

from jobworker_pg._migrate import run_environment

run_environment()
