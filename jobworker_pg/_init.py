"""One call to get a process ready: service, listeners, worker database, default service."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jobqueue
import jobworker
from jobworker_pg._service import PostgresService


def init_job_queue(conninfo: str | None = None, **service_kwargs: Any) -> PostgresService:
    """Build a :class:`PostgresService`, connect the process-wide listener registries
    (``jobqueue.add_job_stopped_listener`` and friends) to its notifications, hand it
    to :mod:`jobworker` as the worker database, and make it the default service.

    ``conninfo`` defaults to $JOBQUEUE_DATABASE_URL, then $DATABASE_URL. The
    schema must be installed (:func:`install_schema` or ``jobqueue migrate``).
    """
    service = PostgresService(conninfo, **service_kwargs)
    service.add_listener(jobqueue.ListenerDispatcher(service))
    jobworker.set_database(service)
    jobqueue.set_default_service(service)
    return service


def init_job_queue_reset_interrupted_jobs(
    conninfo: str | None = None, dead_for: timedelta | float = timedelta(seconds=60), **service_kwargs: Any
) -> PostgresService:
    """:func:`init_job_queue`, then requeue (or fail, with no attempt left) every running
    job whose worker's heartbeat is older than ``dead_for``."""
    service = init_job_queue(conninfo, **service_kwargs)
    service.reap_dead_jobs(dead_for)
    return service
