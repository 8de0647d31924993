"""pg-jobqueue on PostgreSQL: the service, claims, notifications and schema.

Quickstart::

    import jobqueue, jobworker
    from jobworker_pg import init_job_queue, install_schema

    install_schema("postgresql://localhost/app")          # idempotent
    init_job_queue("postgresql://localhost/app")

    @jobworker.job("email.send")
    def send(job: jobqueue.Job) -> str:
        return f"sent to {job.payload['to']}"

    jobworker.start_threads(4)
    jobqueue.add(jobqueue.new_job("email.send", "signup", {"to": "a@example.com"}))

This is the only package of pg-jobqueue that imports psycopg.
"""

import typing

from jobworker_pg._conninfo import mask_password, resolve_conninfo
from jobworker_pg._init import init_job_queue, init_job_queue_reset_interrupted_jobs
from jobworker_pg._inserts import MainModuleJobTypeWarning
from jobworker_pg._listener import NotificationListener
from jobworker_pg._processes import ProcessRegistry
from jobworker_pg._schema import install_schema, schema_sql
from jobworker_pg._service import PostgresService
from jobworker_pg._testmodes import (
    BundlePredicate,
    JobPredicate,
    ignore_job_bundles,
    ignore_job_type,
    ignore_jobs,
    synchronous_jobs,
)

if typing.TYPE_CHECKING:
    from jobworker_pg._migrate import current_revision, downgrade, migrate

# The alembic helpers load SQLAlchemy and alembic: imported on first use, not with the package.
_MIGRATION_NAMES = frozenset({"current_revision", "downgrade", "migrate"})


def __getattr__(name: str) -> object:
    if name in _MIGRATION_NAMES:
        from jobworker_pg import _migrate

        return getattr(_migrate, name)
    raise AttributeError(f"module 'jobworker_pg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_MIGRATION_NAMES})


__all__ = [
    "BundlePredicate",
    "JobPredicate",
    "MainModuleJobTypeWarning",
    "NotificationListener",
    "PostgresService",
    "ProcessRegistry",
    "current_revision",
    "downgrade",
    "ignore_job_bundles",
    "ignore_job_type",
    "ignore_jobs",
    "init_job_queue",
    "init_job_queue_reset_interrupted_jobs",
    "install_schema",
    "mask_password",
    "migrate",
    "resolve_conninfo",
    "schema_sql",
    "synchronous_jobs",
]
