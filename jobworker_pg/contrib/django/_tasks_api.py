"""Django's task API: ``django.tasks`` (Django 6.0+), else the ``django-tasks`` backport.

The backend must subclass the ``BaseTaskBackend`` of the API the project's ``@task``
uses (the backend's ``task_class`` builds the tasks), so it is chosen once, here.
"""

from __future__ import annotations

import importlib
from typing import Any

from jobworker_pg._extras import require

try:  # Django 6.0+
    _base: Any = importlib.import_module("django.tasks.base")
    _backends: Any = importlib.import_module("django.tasks.backends.base")
    _exceptions: Any = importlib.import_module("django.tasks.exceptions")
    _signals: Any = importlib.import_module("django.tasks.signals")
except ImportError:
    _base = require("django_tasks.base", "django", "the django.tasks backend (Django < 6.0)")
    _backends = importlib.import_module("django_tasks.backends.base")
    _exceptions = importlib.import_module("django_tasks.exceptions")
    _signals = importlib.import_module("django_tasks.signals")

BaseTaskBackend: Any = _backends.BaseTaskBackend
Task: Any = _base.Task
TaskContext: Any = _base.TaskContext
TaskError: Any = _base.TaskError
TaskResult: Any = _base.TaskResult
TaskResultStatus: Any = _base.TaskResultStatus
TaskResultDoesNotExist: Any = _exceptions.TaskResultDoesNotExist
InvalidTaskError: Any = _exceptions.InvalidTaskError
task_enqueued: Any = _signals.task_enqueued


def task_backends() -> Any:
    """The project's configured task backends (``TASKS``), by alias."""
    root = importlib.import_module(_base.__name__.rpartition(".")[0])
    return root.task_backends
