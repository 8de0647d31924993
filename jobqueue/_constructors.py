"""Building valid jobs and bundles: every check happens here, before any SQL."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from jobqueue._errors import InvalidJobError
from jobqueue._ids import new_id
from jobqueue._models import Job, JobBundle, JobDesc
from jobqueue._payload import encode_json, to_json_value

MAX_NAME_LENGTH = 100
# C0 and C1 control characters and DEL (Unicode category Cc).
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT32_MAX = 2**31 - 1


def check_name(value: Any, what: str) -> str:
    """Validate a job type, bundle type or origin: a 1..100 character string without control
    characters (they would corrupt logs and notification payloads)."""
    if not isinstance(value, str):
        raise InvalidJobError(f"{what} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise InvalidJobError(f"{what} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidJobError(f"{what} is {len(value)} characters long, over the limit of {MAX_NAME_LENGTH}")
    if _CONTROL_CHARACTER.search(value):
        raise InvalidJobError(f"{what} {value!r} contains a control character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidJobError(f"{what} {value!r} is not valid Unicode: {exc.reason}") from exc
    return value


def _check_int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobError(f"{what} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidJobError(f"{what} must be between {low} and {high}, got {value}")
    return value


def check_start_at(start_at: Any) -> datetime | None:
    """Validate ``start_at``: None or a timezone-aware datetime."""
    if start_at is None:
        return None
    if not isinstance(start_at, datetime):
        raise InvalidJobError(f"start_at must be a datetime, got {type(start_at).__name__}")
    if start_at.tzinfo is None or start_at.tzinfo.utcoffset(start_at) is None:
        raise InvalidJobError(
            "start_at must be timezone-aware (a naive datetime is ambiguous); "
            "use for example datetime.now(UTC) + timedelta(...)"
        )
    return start_at


def check_uuid(value: Any, what: str = "job id") -> UUID:
    """``value`` as a UUID (a UUID or its string form); InvalidJobError naming ``what`` otherwise."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise InvalidJobError(f"{what} must be a UUID, got {value!r}")


def _check_id(id: Any) -> UUID:
    return new_id() if id is None else check_uuid(id, "id")


def job_type_of(payload_or_class: Any) -> str:
    """The job type for a payload class or instance: ``"module.QualName"``.

    Raises InvalidJobError for plain JSON values (dict, list, str, ...), whose
    class says nothing about the job.
    """
    cls = payload_or_class if isinstance(payload_or_class, type) else type(payload_or_class)
    if cls.__module__ == "builtins":
        raise InvalidJobError(
            f"cannot infer a job type from a {cls.__name__} payload; give the job type explicitly "
            "or use a pydantic model or dataclass as payload"
        )
    return f"{cls.__module__}.{cls.__qualname__}"


def new_job(
    job_type: str,
    origin: str,
    payload: Any,
    *,
    priority: int = 0,
    start_at: datetime | None = None,
    max_retry_count: int = 0,
    id: UUID | None = None,
) -> Job:
    """Build a validated :class:`Job`, ready for :func:`jobqueue.add`.

    ``payload`` is any JSON value, a pydantic model or a dataclass instance
    (stored as its JSON dump). Higher ``priority`` runs first; ``start_at``
    (timezone-aware) delays the job; ``max_retry_count`` is how many times a
    failed attempt is retried.

    Raises InvalidJobError, naming the problem, for an empty or over-long type
    or origin, a naive start_at, or a payload that is not JSON, contains NUL
    characters or exceeds the size limit. Touches no database.
    """
    check_name(job_type, "job type")
    check_name(origin, "origin")
    _check_int(priority, "priority", _INT64_MIN, _INT64_MAX)
    _check_int(max_retry_count, "max_retry_count", 0, _INT32_MAX)
    start_at = check_start_at(start_at)
    job_id = _check_id(id)
    value = to_json_value(payload)
    encode_json(value)  # validates; add() encodes again, as the payload may change meanwhile
    job = Job.model_construct(
        id=job_id,
        bundle_id=None,
        type=job_type,
        payload=value,
        priority=priority,
        origin=origin,
        max_retry_count=max_retry_count,
        current_retry_count=0,
        start_at=start_at,
        started_at=None,
        worker_alive_at=None,
        stopped_at=None,
        error_msg=None,
        error_data=None,
        result=None,
        updated_at=None,
        created_at=None,
        attempt=0,
        errors=[],
        cancelled_at=None,
        claim_token=None,
    )
    return job


def new_job_bundle(
    bundle_type: str,
    origin: str,
    jobs: Sequence[JobDesc],
    *,
    start_at: datetime | None = None,
    id: UUID | None = None,
) -> JobBundle:
    """Build a validated :class:`JobBundle` of ``jobs`` (at least one :class:`JobDesc`).

    The bundle is stopped when all its jobs have stopped; bundle listeners and
    bundle handlers then fire once. Raises InvalidJobError as :func:`new_job`
    does, naming the index of a bad job description.
    """
    check_name(bundle_type, "bundle type")
    check_name(origin, "origin")
    start_at = check_start_at(start_at)
    bundle_id = _check_id(id)
    if isinstance(jobs, str | bytes) or not isinstance(jobs, Sequence):
        raise InvalidJobError(f"jobs must be a list of JobDesc, got {type(jobs).__name__}")
    if not jobs:
        raise InvalidJobError("a job bundle needs at least one job")
    built: list[Job] = []
    for index, desc in enumerate(jobs):
        if not isinstance(desc, JobDesc):
            raise InvalidJobError(f"jobs[{index}] must be a JobDesc, got {type(desc).__name__}")
        try:
            job_type = desc.type if desc.type is not None else job_type_of(desc.payload)
            job = new_job(
                job_type,
                desc.origin if desc.origin is not None else origin,
                desc.payload,
                priority=desc.priority,
                start_at=start_at,
                max_retry_count=desc.max_retry_count,
            )
        except InvalidJobError as exc:
            raise InvalidJobError(f"jobs[{index}]: {exc}") from exc
        job.bundle_id = bundle_id
        built.append(job)
    return JobBundle(id=bundle_id, type=bundle_type, origin=origin, num_jobs=len(built), jobs=built)


def payload_json(job: Job) -> str:
    """The job's payload as JSON text: the text :func:`check_job` made in this add() if the
    payload is still that object, else encoded (and validated) now."""
    cached = job._payload_json
    if cached is not None and cached[0] is job.payload:
        return cached[1]
    return encode_json(job.payload)


def check_job(job: Any) -> Job:
    """Validate a Job handed to add(): its fields (the payload too, even in place) may have
    been changed since new_job(), so everything is checked again, payload encoding included."""
    if not isinstance(job, Job):
        raise InvalidJobError(f"expected a jobqueue.Job (see jobqueue.new_job), got {type(job).__name__}")
    job.id = check_uuid(job.id, "id")
    if job.bundle_id is not None:
        job.bundle_id = check_uuid(job.bundle_id, "bundle_id")
    check_name(job.type, "job type")
    check_name(job.origin, "origin")
    _check_int(job.priority, "priority", _INT64_MIN, _INT64_MAX)
    _check_int(job.max_retry_count, "max_retry_count", 0, _INT32_MAX)
    check_start_at(job.start_at)
    job._payload_json = (job.payload, encode_json(job.payload))
    return job
