"""Rows of the worker tables to jobqueue models, without re-validating what PostgreSQL checked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

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

#: The columns claim_jobs returns; the others follow from the claim (see claimed_job_from_row).
CLAIMED_COLUMNS = (
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
    "error_msg",
    "error_data",
    "result",
    "created_at",
    "attempt",
    "errors",
    "cancelled_at",
)
_CLAIMED_ERRORS_INDEX = CLAIMED_COLUMNS.index("errors")

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


def claimed_job_from_row(row: Sequence[Any], claim_token: UUID) -> Job:
    """A Job from a claim_jobs row (CLAIMED_COLUMNS order), claimed with ``claim_token``."""
    values = dict(zip(CLAIMED_COLUMNS, row, strict=True))
    values["errors"] = _attempt_errors(row[_CLAIMED_ERRORS_INDEX])
    started_at = values["started_at"]
    values.update(worker_alive_at=started_at, updated_at=started_at, stopped_at=None, claim_token=claim_token)
    return Job.model_construct(**values)


def bundle_from_rows(rows: Sequence[Sequence[Any]]) -> JobBundle:
    """A JobBundle from the rows of ``get_bundle``: BUNDLE_COLUMNS then JOB_COLUMNS (all null
    in the single row of a bundle without jobs)."""
    width = len(BUNDLE_COLUMNS)
    values = dict(zip(BUNDLE_COLUMNS, rows[0][:width], strict=True))
    jobs = [job_from_row(row[width:]) for row in rows if row[width] is not None]
    return JobBundle.model_construct(**values, jobs=jobs)
