"""Validation and bound parameters of the inserts, shared by the sync and async paths.

Everything here runs before any SQL: a bad job raises InvalidJobError while the
caller's transaction is still untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from psycopg import pq

from jobqueue import InvalidJobError, Job, JobBundle
from jobqueue._constructors import check_job, payload_json


def job_params(job: Job) -> dict[str, Any]:
    """Check a job for ``add_job`` and return the parameters of ``insert_job``."""
    check_job(job)
    if job.bundle_id is not None:
        raise InvalidJobError("a job with a bundle_id is added with its bundle (add_job_bundle)")
    return {
        "id": job.id,
        "bundle_id": None,
        "type": job.type,
        "payload": payload_json(job),
        "priority": job.priority,
        "origin": job.origin,
        "max_retry_count": job.max_retry_count,
        "start_at": job.start_at,
    }


def checked_jobs(jobs: Sequence[Job]) -> list[Job]:
    """Check the jobs of ``add_jobs`` (each valid, no id twice) and return them as a list."""
    if isinstance(jobs, Job) or not isinstance(jobs, Iterable):
        raise InvalidJobError(f"add_many takes a list of jobs, got {type(jobs).__name__}")
    jobs = list(jobs)
    seen: set[UUID] = set()
    for index, job in enumerate(jobs):
        try:
            check_job(job)
        except InvalidJobError as exc:
            raise InvalidJobError(f"jobs[{index}]: {exc}") from exc
        if job.id in seen:
            raise InvalidJobError(f"jobs[{index}]: id {job.id} appears twice")
        seen.add(job.id)
    return jobs


def checked_bundle(bundle: JobBundle) -> list[Job]:
    """Check a bundle for ``add_job_bundle`` and return its jobs."""
    if not isinstance(bundle, JobBundle):
        raise InvalidJobError(
            f"expected a jobqueue.JobBundle (see jobqueue.new_job_bundle), got {type(bundle).__name__}"
        )
    if not bundle.jobs or bundle.num_jobs != len(bundle.jobs):
        raise InvalidJobError(
            f"bundle {bundle.id} says num_jobs={bundle.num_jobs} but holds {len(bundle.jobs)} jobs"
        )
    for index, job in enumerate(bundle.jobs):
        try:
            check_job(job)
        except InvalidJobError as exc:
            raise InvalidJobError(f"bundle jobs[{index}]: {exc}") from exc
        if job.bundle_id != bundle.id:
            raise InvalidJobError(f"bundle jobs[{index}] belongs to bundle {job.bundle_id}, not {bundle.id}")
    return list(bundle.jobs)


def jobs_params(jobs: Sequence[Job]) -> dict[str, Any]:
    """The parameters of ``insert_jobs`` (one array per column) for checked jobs."""
    return {
        "ids": [j.id for j in jobs],
        "bundle_ids": [j.bundle_id for j in jobs],
        "types": [j.type for j in jobs],
        "payloads": [payload_json(j) for j in jobs],
        "priorities": [j.priority for j in jobs],
        "origins": [j.origin for j in jobs],
        "max_retry_counts": [j.max_retry_count for j in jobs],
        "start_ats": [j.start_at for j in jobs],
    }


def bundle_params(bundle: JobBundle) -> dict[str, Any]:
    """The parameters of ``insert_bundle``."""
    return {"id": bundle.id, "type": bundle.type, "origin": bundle.origin, "num_jobs": bundle.num_jobs}


def must_open_transaction(autocommit: bool, status: pq.TransactionStatus) -> bool:
    """True when a caller's connection has no transaction open yet but will get one implicitly.

    psycopg's ``transaction()`` on such an idle, non-autocommit connection would run
    its own BEGIN ... COMMIT and commit the inserts regardless of the caller's later
    commit or rollback (a SQLAlchemy Session that has not run a statement yet is in
    this state). Running one statement first opens the caller's transaction, so the
    block becomes a savepoint inside it.
    """
    return not autocommit and status == pq.TransactionStatus.IDLE
