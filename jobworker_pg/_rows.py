"""Rows of the worker tables to jobqueue models, without re-validating what PostgreSQL checked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from jobqueue import AttemptError, Job, JobBundle
from jobqueue._constructors import job_from_fields

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
    "unique_key",
    "scheduled_for",
    "queue",
    "meta",
    "timeout",
    "concurrency_key",
)
_ERRORS_INDEX = JOB_COLUMNS.index("errors")


BUNDLE_COLUMNS = ("id", "type", "origin", "num_jobs", "num_jobs_stopped", "updated_at", "created_at")


def _attempt_errors(raw: Any) -> list[AttemptError]:
    if not raw:
        return []
    return [AttemptError.model_validate(entry) for entry in raw]


# Job fields that are options of the insert, not columns: every stored job has their defaults.
_INSERT_OPTIONS = {"unique_for": None, "on_conflict": "return", "deduplicated": False}


def job_from_row(row: Sequence[Any]) -> Job:
    """A Job from a row in JOB_COLUMNS order (unvalidated: the database checked it)."""
    values = dict(zip(JOB_COLUMNS, row, strict=True))
    values["errors"] = _attempt_errors(row[_ERRORS_INDEX])
    values.update(_INSERT_OPTIONS)
    return job_from_fields(values)


def claimed_job_from_row(row: Sequence[Any], claim_token: UUID, queue: str) -> Job:
    """A Job from a claim_jobs or claim_queue_jobs row, claimed with ``claim_token`` from
    ``queue``: the row holds only what the claim did not set itself (see the claim_jobs query)."""
    (
        job_id,
        bundle_id,
        job_type,
        payload,
        priority,
        origin,
        max_retry_count,
        current_retry_count,
        start_at,
        started_at,
        error_msg,
        error_data,
        result,
        created_at,
        attempt,
        errors,
        cancelled_at,
        unique_key,
        scheduled_for,
        meta,
        timeout,
        concurrency_key,
    ) = row
    return job_from_fields(
        {  # in model order (JOB_COLUMNS)
            "id": job_id,
            "bundle_id": bundle_id,
            "type": job_type,
            "payload": payload,
            "priority": priority,
            "origin": origin,
            "max_retry_count": max_retry_count,
            "current_retry_count": current_retry_count,
            "start_at": start_at,
            "started_at": started_at,
            "worker_alive_at": started_at,  # the claim set all three to now()
            "stopped_at": None,
            "error_msg": error_msg,
            "error_data": error_data,
            "result": result,
            "updated_at": started_at,
            "created_at": created_at,
            "attempt": attempt,
            "errors": _attempt_errors(errors),
            "cancelled_at": cancelled_at,
            "claim_token": claim_token,
            "unique_key": unique_key,
            "scheduled_for": scheduled_for,
            "queue": queue,
            "meta": meta,
            "timeout": timeout,
            "concurrency_key": concurrency_key,
            **_INSERT_OPTIONS,
        }
    )


def bundle_from_rows(rows: Sequence[Sequence[Any]]) -> JobBundle:
    """A JobBundle from the rows of ``get_bundle``: BUNDLE_COLUMNS then JOB_COLUMNS (all null
    in the single row of a bundle without jobs)."""
    width = len(BUNDLE_COLUMNS)
    values = dict(zip(BUNDLE_COLUMNS, rows[0][:width], strict=True))
    jobs = [job_from_row(row[width:]) for row in rows if row[width] is not None]
    return JobBundle.model_construct(**values, jobs=jobs)
