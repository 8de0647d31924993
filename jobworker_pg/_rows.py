"""Rows of the worker tables to jobqueue models, without re-validating what PostgreSQL checked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobqueue import AttemptError, Job, JobBundle

JOB_COLUMNS = (
    "id",
    "bundle_id",
    "type",
    "payload",
    "priority",
    "origin",
    "max_retry_count",
    "current_retry_count",
    "start_at",
    "started_at",
    "worker_alive_at",
    "stopped_at",
    "error_msg",
    "error_data",
    "result",
    "updated_at",
    "created_at",
    "attempt",
    "errors",
    "cancelled_at",
    "claim_token",
)
_ERRORS_INDEX = JOB_COLUMNS.index("errors")

BUNDLE_COLUMNS = ("id", "type", "origin", "num_jobs", "num_jobs_stopped", "updated_at", "created_at")


def _attempt_errors(raw: Any) -> list[AttemptError]:
    if not raw:
        return []
    return [AttemptError.model_validate(entry) for entry in raw]


def job_from_row(row: Sequence[Any]) -> Job:
    """A Job from a row in JOB_COLUMNS order (model_construct: the database already checked it)."""
    values = dict(zip(JOB_COLUMNS, row, strict=True))
    values["errors"] = _attempt_errors(row[_ERRORS_INDEX])
    return Job.model_construct(**values)


def bundle_from_row(row: Sequence[Any], jobs: list[Job]) -> JobBundle:
    """A JobBundle from a row in BUNDLE_COLUMNS order, with its jobs."""
    values = dict(zip(BUNDLE_COLUMNS, row, strict=True))
    return JobBundle.model_construct(**values, jobs=jobs)
