"""``JobQueueBackend``: Django's task API (``django.tasks``) on pg-jobqueue.

Every ``.enqueue()`` stores one job of type :data:`TASK_JOB_TYPE` on Django's own
database connection, so inside ``transaction.atomic()`` the task exists only if the block
commits. The job's id is the result id; priority and ``run_after`` become the job's
priority and ``start_at``; the return value is the job's result.
"""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

import jobqueue
from jobqueue import Job, JobNotFoundError, JobState
from jobworker_pg._service import PostgresService
from jobworker_pg.contrib.django import _tasks_api as api
from jobworker_pg.contrib.django._connection import conninfo_of

#: The job type of every task (the task's dotted path is in the payload and the origin).
TASK_JOB_TYPE = "django.task"

_STATUS = {
    JobState.PENDING: "READY",
    JobState.SCHEDULED: "READY",
    JobState.RETRYING: "READY",  # ready to be executed again
    JobState.RUNNING: "RUNNING",
    JobState.SUCCEEDED: "SUCCESSFUL",
    JobState.FAILED: "FAILED",
    JobState.CANCELLED: "FAILED",  # never ran; Django has no "cancelled"
}


class JobQueueBackend(api.BaseTaskBackend):  # type: ignore[misc]  # chosen at import: typed Any
    """A ``TASKS`` backend storing tasks as pg-jobqueue jobs::

        TASKS = {"default": {
            "BACKEND": "jobworker_pg.contrib.django.JobQueueBackend",
            "OPTIONS": {"DATABASE": "default", "MAX_RETRIES": 0},
        }}

    OPTIONS: ``DATABASE``, the Django database alias the jobs are stored through
    (``default``); ``MAX_RETRIES``, retries of a failing task (0); ``DATABASE_URL``, a URL
    for reading results and for the worker, when Django's own connection goes through
    a pooler that cannot LISTEN (see docs/pgbouncer.md). Run the tasks with
    ``manage.py jobqueue_worker``.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.database: str = self.options.get("DATABASE", "default")
        self.max_retries = int(self.options.get("MAX_RETRIES", 0))
        self._url: str | None = self.options.get("DATABASE_URL")
        self._service: PostgresService | None = None
        self._lock = threading.Lock()

    def conninfo(self) -> str:
        """The URL results are read from and the worker runs on: OPTIONS ``DATABASE_URL``,
        else that of Django's database ``DATABASE``."""
        return self._url or conninfo_of(self.database)

    def service(self) -> PostgresService:
        """The backend's own service (connections opened on demand), for reading results."""
        with self._lock:
            if self._service is None:
                self._service = PostgresService(self.conninfo(), min_size=0, max_size=4)
            return self._service

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Store the task as a job on Django's connection (joining an open ``atomic()``)."""
        from django.db import connections

        self.validate_task(task)
        result = _new_result(task, self.alias, args, kwargs)  # normalises args to JSON
        job = jobqueue.new_job(
            TASK_JOB_TYPE,
            task.module_path[:100],
            {
                "task": task.module_path,
                "args": result.args,
                "kwargs": result.kwargs,
                "queue": task.queue_name,
            },
            priority=task.priority,
            start_at=_aware(task.run_after),
            max_retry_count=self.max_retries,
        )
        self.service().add_job(job, conn=connections[self.database])
        result = result_of(job, task, self.alias)
        api.task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        """The task's result as stored now; TaskResultDoesNotExist for an unknown id (a task
        enqueued in a transaction that has not committed is not visible yet)."""
        try:
            job = self.service().get_job(UUID(str(result_id)))
        except (ValueError, JobNotFoundError):
            raise api.TaskResultDoesNotExist(result_id) from None
        if job.type != TASK_JOB_TYPE:
            raise api.TaskResultDoesNotExist(result_id)
        return result_of(job, load_task(job.payload["task"]), self.alias)

    def close(self) -> None:
        """Close the backend's service (Django calls this on ``task_backends.close_all()``)."""
        with self._lock:
            if self._service is not None:
                self._service.close()
                self._service = None


def load_task(path: str) -> Any:
    """The ``@task`` object at dotted ``path``; a clear error when it is not one."""
    from django.utils.module_loading import import_string

    task = import_string(path)
    if not isinstance(task, api.Task):
        raise jobqueue.InvalidJobError(f"{path} is a {type(task).__name__}, not a task (@task)")
    return task


def _new_result(task: Any, backend: str, args: Any, kwargs: Any) -> Any:
    return api.TaskResult(
        task=task,
        id="",
        status=api.TaskResultStatus.READY,
        enqueued_at=None,
        started_at=None,
        finished_at=None,
        last_attempted_at=None,
        args=list(args),
        kwargs=dict(kwargs),
        backend=backend,
        errors=[],
        worker_ids=[],
    )


def result_of(job: Job, task: Any, backend: str) -> Any:
    """The ``TaskResult`` of a job of a task."""
    result = api.TaskResult(
        task=task,
        id=str(job.id),
        status=api.TaskResultStatus[_STATUS[job.state]],
        enqueued_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.stopped_at,
        last_attempted_at=job.started_at,
        args=job.payload.get("args", []),
        kwargs=job.payload.get("kwargs", {}),
        backend=backend,
        errors=_errors(job),
        # pg-jobqueue does not record which worker ran an attempt: one entry per attempt,
        # so that TaskResult.attempts (and TaskContext.attempt) are right.
        worker_ids=[f"attempt-{n}" for n in range(1, job.attempt + 1)],
    )
    if job.state == JobState.SUCCEEDED:
        object.__setattr__(result, "_return_value", job.result)
    return result


def _errors(job: Job) -> list[Any]:
    last_traceback = job.error_data.get("traceback") if isinstance(job.error_data, dict) else None
    errors = []
    for i, error in enumerate(job.errors):
        path = error.type or "Exception"
        if "." not in path:
            path = f"builtins.{path}"
        is_last = i == len(job.errors) - 1
        text = last_traceback if is_last and isinstance(last_traceback, str) else error.message
        errors.append(api.TaskError(exception_class_path=path, traceback=text))
    return errors


def _aware(when: Any) -> Any:
    """``run_after`` as an aware datetime (with USE_TZ=False Django allows naive ones: they
    are in Django's default time zone)."""
    if when is None or when.tzinfo is not None:
        return when
    from django.utils import timezone

    return timezone.make_aware(when)
