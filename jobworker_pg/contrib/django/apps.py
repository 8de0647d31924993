"""The Django app (``INSTALLED_APPS``) that brings ``manage.py jobqueue_worker``."""

from __future__ import annotations

from django.apps import AppConfig


class JobQueueConfig(AppConfig):  # type: ignore[misc]  # Django has no type hints
    name = "jobworker_pg.contrib.django"
    label = "jobqueue"  # the last part of the name, "django", would read as Django itself
    verbose_name = "pg-jobqueue"
