"""pg-jobqueue for Django: a ``django.tasks`` backend, enqueueing inside ``atomic()``, and
``manage.py jobqueue_worker``.

Settings::

    INSTALLED_APPS = [..., "jobworker_pg.contrib.django"]   # for the management command
    TASKS = {"default": {"BACKEND": "jobworker_pg.contrib.django.JobQueueBackend"}}

Then ``@task``-decorated functions ``.enqueue()`` into pg-jobqueue on Django's own
connection (inside ``transaction.atomic()`` the task exists only if the block commits),
``manage.py jobqueue_worker`` runs them, and ``task.get_result(id)`` reads the outcome.
``jobqueue.add(job, conn=django.db.connection)`` stores a plain job the same way.
Needs ``pip install 'pg-jobqueue[django]'`` (Django; the django-tasks backport before 6.0).
"""

from __future__ import annotations

from typing import Any

__all__ = ["TASK_JOB_TYPE", "JobQueueBackend", "conninfo_of", "psycopg_connection"]

from jobworker_pg.contrib.django._connection import conninfo_of, psycopg_connection


def __getattr__(name: str) -> Any:
    # The backend imports Django's task API, which needs configured settings: load it when
    # asked for (Django's import_string of "...JobQueueBackend"), not with the app.
    if name in ("JobQueueBackend", "TASK_JOB_TYPE"):
        from jobworker_pg.contrib.django import _backend

        return getattr(_backend, name)
    raise AttributeError(name)
