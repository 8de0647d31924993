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

from jobworker_pg._conninfo import mask_password, resolve_conninfo
from jobworker_pg._init import init_job_queue, init_job_queue_reset_interrupted_jobs
from jobworker_pg._listener import NotificationListener
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

__all__ = [
    "BundlePredicate",
    "JobPredicate",
    "NotificationListener",
    "PostgresService",
    "ignore_job_bundles",
    "ignore_job_type",
    "ignore_jobs",
    "init_job_queue",
    "init_job_queue_reset_interrupted_jobs",
    "install_schema",
    "mask_password",
    "resolve_conninfo",
    "schema_sql",
    "synchronous_jobs",
]
