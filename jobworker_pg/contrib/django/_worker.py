"""The worker side: the handler that runs a task's job, in a registry of its own."""

from __future__ import annotations

from typing import Any

from jobqueue import Job
from jobworker import Registry
from jobworker_pg.contrib.django import _tasks_api as api
from jobworker_pg.contrib.django._backend import TASK_JOB_TYPE, load_task, result_of


def run_task_job(job: Job) -> Any:
    """Run the task a job carries; its return value becomes the job's result."""
    task = load_task(job.payload["task"])
    args, kwargs = job.payload.get("args", []), job.payload.get("kwargs", {})
    if task.takes_context:
        context = api.TaskContext(task_result=result_of(job, task, task.backend))
        return task.call(context, *args, **kwargs)
    return task.call(*args, **kwargs)


def _close_old_connections(*_: Any) -> None:
    # What Django does around each request: drop this thread's connections that broke or
    # outlived CONN_MAX_AGE, so a long-running worker does not keep dead ones.
    from django.db import close_old_connections

    close_old_connections()


def task_registry() -> Registry:
    """A registry serving Django tasks, closing Django's old connections around each job."""
    registry = Registry()
    registry.register(TASK_JOB_TYPE, run_task_job)
    registry.add_before_job_hook(_close_old_connections)
    registry.add_after_job_hook(_close_old_connections)
    return registry
