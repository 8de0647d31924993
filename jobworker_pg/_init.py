"""One call to get a process ready: service, listeners, worker database, default service."""

from __future__ import annotations

import threading
import weakref
from datetime import timedelta
from typing import Any

import jobqueue
import jobworker
from jobworker_pg._service import PostgresService

_lock = threading.Lock()
_initialised: PostgresService | None = None  # the service of the last init_job_queue


def init_job_queue(conninfo: str | None = None, **service_kwargs: Any) -> PostgresService:
    """Build a :class:`PostgresService`, connect the process-wide listener registries
    (``jobqueue.add_job_stopped_listener`` and friends) to its notifications, hand it
    to :mod:`jobworker` as the worker database, and make it the default service.

    The registries are connected when the first listener is registered (at once if one
    is): a process that never listens opens no LISTEN connection for stop events and runs
    no dispatch thread. Registering the first listener waits (up to a few seconds) until
    the LISTEN is in place, so every job that stops afterwards is reported.

    ``conninfo`` defaults to $JOBQUEUE_DATABASE_URL, then $DATABASE_URL. The
    schema must be installed (:func:`install_schema` or ``jobqueue migrate``).
    Connects once first, so a wrong URL, password or database name fails here, at
    once, with the server's reason (DatabaseError). The listener's connection errors
    go to ``jobworker.on_error`` unless ``on_error=`` is given. Calling it again
    replaces the service of the previous call and closes that one (its listeners
    would otherwise fire every event a second time). Nothing is left open when it
    raises (RegistrationError while worker threads run on the previous service).
    """
    global _initialised
    service_kwargs.setdefault("on_error", jobworker.default_pool().pass_on_error)
    service = PostgresService(conninfo, **service_kwargs)
    previous_database = jobworker.default_pool().database
    service_ref = weakref.ref(service)  # a closed, forgotten service is not kept alive by the hook

    def connect_listeners() -> bool:
        # Runs once a listener is registered (at once if one already is): only then does this
        # process pay for stop notifications and the thread that dispatches them.
        current = service_ref()
        if current is None or current.closed:
            return False
        current.add_listener(jobqueue.ListenerDispatcher(current))
        return False  # attached: the dispatcher reads the registries at each event

    try:
        service.check_connection()
        jobworker.set_database(service)
        jobqueue.when_listened(connect_listeners)
    except BaseException:
        if jobworker.default_pool().database is service:
            jobworker.set_database(previous_database)
        service.close()
        raise
    jobqueue.set_default_service(service)
    with _lock:
        previous, _initialised = _initialised, service
    if previous is not None:
        previous.close()
    return service


def init_job_queue_reset_interrupted_jobs(
    conninfo: str | None = None, dead_for: timedelta | float = timedelta(seconds=60), **service_kwargs: Any
) -> PostgresService:
    """:func:`init_job_queue`, then requeue (or fail, with no attempt left) every running
    job whose worker's heartbeat is older than ``dead_for``."""
    service = init_job_queue(conninfo, **service_kwargs)
    service.reap_dead_jobs(dead_for)
    return service
