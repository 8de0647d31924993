"""Validation and bound parameters of the inserts, shared by the sync and async paths.

Everything here runs before any SQL: a bad job raises InvalidJobError while the
caller's transaction is still untouched.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from psycopg import pq

from jobqueue import InvalidJobError, Job, JobBundle
from jobqueue._constructors import check_job
from jobqueue._payload import encode_json


def meta_json(job: Job) -> str | None:
    """The job's ``meta`` as JSON text (checked by check_job), None when it has none."""
    return None if job.meta is None else encode_json(job.meta, "meta")


class MainModuleJobTypeWarning(UserWarning):
    """A job was stored with a type from ``__main__`` (a script's own class), which no worker
    importing the script as a module serves: that worker sees ``script.Resize``."""


_warned_main_types: set[str] = set()


def warn_about_main_types(jobs: Iterable[Job]) -> None:
    """Warn once per type about job types of ``__main__`` (see MainModuleJobTypeWarning)."""
    for job in jobs:
        if job.type.startswith("__main__.") and job.type not in _warned_main_types:
            _warned_main_types.add(job.type)
            warnings.warn(
                f"job type {job.type!r} comes from a class defined in the script being run (__main__); "
                "a worker imports that script as a module and serves the type under the module's name, "
                "so no worker runs these jobs: define the class in an importable module, or name the "
                "type explicitly (@jobworker.job('resize'), new_job('resize', ...))",
                MainModuleJobTypeWarning,
                stacklevel=5,
            )


def job_params(job: Job) -> dict[str, Any]:
    """Check a job for ``add_job`` and return the parameters of ``insert_job``."""
    payload = check_job(job)
    warn_about_main_types((job,))
    if job.bundle_id is not None:
        raise InvalidJobError("a job with a bundle_id is added with its bundle (add_job_bundle)")
    return {
        "id": job.id,
        "bundle_id": None,
        "type": job.type,
        "payload": payload,
        "priority": job.priority,
        "origin": job.origin,
        "max_retry_count": job.max_retry_count,
        "start_at": job.start_at,
        "queue": job.queue,
        "meta": meta_json(job),
        "timeout": job.timeout,
        "concurrency_key": job.concurrency_key,
        "trace_context": None,
    }


def checked_jobs_and_payloads(jobs: Sequence[Job]) -> tuple[list[Job], list[str]]:
    """Check the jobs of ``add_jobs`` (each valid, no id twice); return them as a list, and
    the JSON text of each one's payload (what gets stored)."""
    if isinstance(jobs, Job) or not isinstance(jobs, Iterable):
        raise InvalidJobError(f"add_many takes a list of jobs, got {type(jobs).__name__}")
    jobs = list(jobs)
    payloads: list[str] = []
    seen: set[int] = set()  # UUID.int: hashed in C, UUID.__hash__ is Python code
    for index, job in enumerate(jobs):
        try:
            payloads.append(check_job(job))
        except InvalidJobError as exc:
            raise InvalidJobError(f"jobs[{index}]: {exc}") from exc
        key = job.id.int
        if key in seen:
            raise InvalidJobError(f"jobs[{index}]: id {job.id} appears twice")
        seen.add(key)
    warn_about_main_types(jobs)
    return jobs, payloads


def checked_jobs(jobs: Sequence[Job]) -> list[Job]:
    """Check the jobs of ``add_jobs`` (each valid, no id twice) and return them as a list."""
    return checked_jobs_and_payloads(jobs)[0]


def checked_bundle_and_payloads(bundle: JobBundle) -> tuple[list[Job], list[str]]:
    """Check a bundle for ``add_job_bundle``; return its jobs and their payloads' JSON text."""
    if not isinstance(bundle, JobBundle):
        raise InvalidJobError(
            f"expected a jobqueue.JobBundle (see jobqueue.new_job_bundle), got {type(bundle).__name__}"
        )
    if not bundle.jobs or bundle.num_jobs != len(bundle.jobs):
        raise InvalidJobError(
            f"bundle {bundle.id} says num_jobs={bundle.num_jobs} but holds {len(bundle.jobs)} jobs"
        )
    payloads: list[str] = []
    for index, job in enumerate(bundle.jobs):
        try:
            payloads.append(check_job(job))
        except InvalidJobError as exc:
            raise InvalidJobError(f"bundle jobs[{index}]: {exc}") from exc
        if job.bundle_id != bundle.id:
            raise InvalidJobError(f"bundle jobs[{index}] belongs to bundle {job.bundle_id}, not {bundle.id}")
    warn_about_main_types(bundle.jobs)
    return list(bundle.jobs), payloads


def checked_bundle(bundle: JobBundle) -> list[Job]:
    """Check a bundle for ``add_job_bundle`` and return its jobs."""
    return checked_bundle_and_payloads(bundle)[0]


def payloads_of(kept: Sequence[Job], jobs: Sequence[Job], payloads: Sequence[str]) -> list[str]:
    """The payload texts of the jobs ``kept`` out of ``jobs`` (whose texts are ``payloads``),
    for the jobs a test mode leaves to be stored."""
    by_job = {id(j): text for j, text in zip(jobs, payloads, strict=True)}
    return [by_job[id(j)] for j in kept]


def jobs_params(jobs: Sequence[Job], payloads: Sequence[str]) -> dict[str, Any]:
    """The parameters of ``insert_jobs`` (one array per column) for checked jobs."""
    return {
        "ids": [j.id for j in jobs],
        "bundle_ids": [j.bundle_id for j in jobs],
        "types": [j.type for j in jobs],
        "payloads": list(payloads),
        "priorities": [j.priority for j in jobs],
        "origins": [j.origin for j in jobs],
        "max_retry_counts": [j.max_retry_count for j in jobs],
        "start_ats": [j.start_at for j in jobs],
        "queues": [j.queue for j in jobs],
        "metas": [meta_json(j) for j in jobs],
        "timeouts": [j.timeout for j in jobs],
        "concurrency_keys": [j.concurrency_key for j in jobs],
        "trace_context": None,
    }


def has_unique_jobs(jobs: Sequence[Job]) -> bool:
    """True when some job has a unique_key: those go through insert_unique_jobs."""
    return any(j.unique_key is not None for j in jobs)


def unique_jobs_params(jobs: Sequence[Job], payloads: Sequence[str]) -> dict[str, Any]:
    """The parameters of ``insert_unique_jobs``: those of insert_jobs plus the unique options."""
    params = jobs_params(jobs, payloads)
    params["unique_keys"] = [j.unique_key for j in jobs]
    params["unique_fors"] = [None if j.unique_for is None else j.unique_for.total_seconds() for j in jobs]
    return params


def unique_job_params(job: Job, payload: str) -> dict[str, Any]:
    """The parameters of ``insert_unique_job`` (one checked job)."""
    return {
        "id": job.id,
        "bundle_id": job.bundle_id,
        "type": job.type,
        "payload": payload,
        "priority": job.priority,
        "origin": job.origin,
        "max_retry_count": job.max_retry_count,
        "start_at": job.start_at,
        "unique_key": job.unique_key,
        "unique_for": None if job.unique_for is None else job.unique_for.total_seconds(),
        "queue": job.queue,
        "meta": meta_json(job),
        "timeout": job.timeout,
        "concurrency_key": job.concurrency_key,
    }


def first_of_each_key(jobs: Sequence[Job]) -> tuple[list[int], dict[int, int]]:
    """Indexes of the jobs to insert (a job without key, or the first with its key) and, for
    each later job with a key seen before, the index of that first one."""
    first: dict[str, int] = {}
    kept: list[int] = []
    later: dict[int, int] = {}
    for index, job in enumerate(jobs):
        key = job.unique_key
        if key is None:
            kept.append(index)
        elif key in first:
            later[index] = first[key]
        else:
            first[key] = index
            kept.append(index)
    return kept, later


# From this many jobs on, add_jobs and bundles store them with COPY (copy_jobs), below with
# one insert_jobs statement. COPY costs two to four round trips more (COPY, now() for
# created_at, and a transaction of its own on an autocommit connection) but less per row:
# measured about even at 64-128 jobs, 20-25 % faster at 1,000.
COPY_MIN_JOBS = 100

# The column types of copy_jobs, in its column order. The payload is sent as jsonb's binary
# form: a version byte (1), then the JSON text; so the text made by check_job goes as is.
COPY_TYPES = (
    "uuid",
    "uuid",
    "text",
    "text",
    "int8",
    "text",
    "int4",
    "timestamptz",
    "text",
    "text",
    "interval",
    "text",
)
_JSONB_VERSION = "\x01"


def copy_rows(jobs: Sequence[Job], payloads: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The rows of ``copy_jobs`` for checked jobs, made one at a time while the COPY runs
    (nothing here can fail: all was checked before, and a row list would only feed the GC)."""
    version = _JSONB_VERSION
    for j, payload in zip(jobs, payloads, strict=True):
        yield (
            j.id,
            j.bundle_id,
            j.type,
            version + payload,
            j.priority,
            j.origin,
            j.max_retry_count,
            j.start_at,
            j.queue,
            None if j.meta is None else version + encode_json(j.meta, "meta"),
            j.timeout,
            j.concurrency_key,
        )


_TIMESTAMP_FIELDS = ("created_at", "updated_at")


def set_timestamps(jobs: Sequence[Job], created_at: datetime, updated_at: datetime | None = None) -> None:
    """Set created_at and updated_at (default: created_at) of stored jobs, from the database."""
    if updated_at is None:
        updated_at = created_at
    for j in jobs:
        if type(j) is Job:  # what pydantic's __setattr__ does for Job, without its overhead
            fields = j.__dict__
            fields["created_at"] = created_at
            fields["updated_at"] = updated_at
            fields_set = j.__pydantic_fields_set__
            if "created_at" not in fields_set or "updated_at" not in fields_set:
                fields_set.update(_TIMESTAMP_FIELDS)
        else:  # a subclass may validate assignments
            j.created_at, j.updated_at = created_at, updated_at


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
