"""Building valid jobs and bundles: every check happens here, before any SQL."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from jobqueue._errors import InvalidJobError
from jobqueue._ids import new_id
from jobqueue._models import Job, JobBundle, JobDesc
from jobqueue._payload import check_json, encode_json, to_json_value
from jobqueue._queues import DEFAULT_QUEUE, check_concurrency_key, check_meta, check_queue_name, check_timeout

MAX_NAME_LENGTH = 100
# C0 and C1 control characters and DEL (Unicode category Cc).
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT32_MAX = 2**31 - 1


# Names that passed check_name: a str's validity never changes, and a process uses few names,
# so checking a known one is a set lookup. Bounded, in case names are made up per job.
_valid_names: set[str] = set()
_MAX_VALID_NAMES = 4096


def check_name(value: Any, what: str) -> str:
    """Validate a job type, bundle type or origin: a 1..100 character string without control
    characters (they would corrupt logs and notification payloads)."""
    if type(value) is str and value in _valid_names:
        return value
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
    if type(value) is str and len(_valid_names) < _MAX_VALID_NAMES:
        _valid_names.add(value)
    return value


def _check_int(value: Any, what: str, low: int, high: int) -> int:
    if type(value) is int and low <= value <= high:
        return value
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
    if type(value) is UUID or isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise InvalidJobError(f"{what} must be a UUID, got {value!r}")


MAX_UNIQUE_KEY_LENGTH = 500
ON_CONFLICT_CHOICES = ("return", "raise")


def check_unique(unique_key: Any, unique_for: Any, on_conflict: Any) -> timedelta | None:
    """Validate the unique-job options of new_job; returns ``unique_for`` as a timedelta."""
    if unique_key is not None:
        if not isinstance(unique_key, str):
            raise InvalidJobError(f"unique_key must be a str, got {type(unique_key).__name__}")
        if not unique_key:
            raise InvalidJobError("unique_key must not be empty (None means: not unique)")
        if len(unique_key) > MAX_UNIQUE_KEY_LENGTH:
            raise InvalidJobError(
                f"unique_key is {len(unique_key)} characters long, over the limit of {MAX_UNIQUE_KEY_LENGTH}"
            )
        if "\x00" in unique_key:
            raise InvalidJobError("unique_key contains a NUL character")
    if on_conflict not in ON_CONFLICT_CHOICES:
        raise InvalidJobError(f"on_conflict must be 'return' or 'raise', got {on_conflict!r}")
    if unique_for is None:
        return None
    if unique_key is None:
        raise InvalidJobError("unique_for needs a unique_key")
    if isinstance(unique_for, bool) or not isinstance(unique_for, timedelta | int | float):
        raise InvalidJobError(f"unique_for must be a timedelta or a number of seconds, got {unique_for!r}")
    period = unique_for if isinstance(unique_for, timedelta) else timedelta(seconds=unique_for)
    if period <= timedelta(0):
        raise InvalidJobError(f"unique_for must be positive, got {unique_for!r}")
    return period


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


_object_setattr = object.__setattr__
_ALL_JOB_FIELDS = frozenset(Job.model_fields)


def _job_template() -> dict[str, Any] | None:
    """Job's fields in model order with their defaults, for new_job to copy; None when a
    default is not a plain constant (then new_job uses model_construct)."""
    template: dict[str, Any] = {}
    for name, field in Job.model_fields.items():
        if field.default_factory is not None:
            if name != "errors" or field.default_factory is not list:
                return None
            template[name] = None  # a new list per job
        elif field.is_required() or field.default is None or type(field.default) in (int, str, bool):
            template[name] = None if field.is_required() else field.default
        else:
            return None
    return template


_job_fields = _job_template()


def _make_job(
    job_id: UUID,
    bundle_id: UUID | None,
    job_type: str,
    payload: Any,
    priority: int,
    origin: str,
    max_retry_count: int,
    start_at: datetime | None,
    queue: str = DEFAULT_QUEUE,
    meta: dict[str, Any] | None = None,
    timeout: timedelta | None = None,
    concurrency_key: str | None = None,
) -> Job:
    """The Job that ``Job.model_construct`` makes given every field (so every field is in
    model_fields_set, as new_job has always made them), without its per-field loop."""
    if _job_fields is None:
        return Job.model_construct(
            set(_ALL_JOB_FIELDS),
            id=job_id,
            bundle_id=bundle_id,
            type=job_type,
            payload=payload,
            priority=priority,
            origin=origin,
            max_retry_count=max_retry_count,
            start_at=start_at,
            queue=queue,
            meta=meta,
            timeout=timeout,
            concurrency_key=concurrency_key,
        )
    fields = _job_fields.copy()
    fields["id"] = job_id
    fields["bundle_id"] = bundle_id
    fields["type"] = job_type
    fields["payload"] = payload
    fields["priority"] = priority
    fields["origin"] = origin
    fields["max_retry_count"] = max_retry_count
    fields["start_at"] = start_at
    fields["errors"] = []
    if queue is not DEFAULT_QUEUE:
        fields["queue"] = queue
    if meta is not None:
        fields["meta"] = meta
    if timeout is not None:
        fields["timeout"] = timeout
    if concurrency_key is not None:
        fields["concurrency_key"] = concurrency_key
    return job_from_fields(fields)


def job_from_fields(fields: dict[str, Any]) -> Job:
    """A Job holding ``fields`` (every field, in model order) as they are, unvalidated: what
    ``Job.model_construct(**fields)`` makes, without its per-field loop. For values that were
    checked already (by new_job, or by the database's constraints)."""
    if _job_fields is None:  # the fast path did not pass its check: a changed Job model
        return Job.model_construct(set(_ALL_JOB_FIELDS), **fields)
    job = Job.__new__(Job)
    _object_setattr(job, "__dict__", fields)
    _object_setattr(job, "__pydantic_fields_set__", set(_ALL_JOB_FIELDS))
    _object_setattr(job, "__pydantic_extra__", None)
    _object_setattr(job, "__pydantic_private__", None)
    return job


_MADE_FIELDS = (
    "id",
    "bundle_id",
    "type",
    "payload",
    "priority",
    "origin",
    "max_retry_count",
    "start_at",
    "queue",
    "meta",
    "timeout",
    "concurrency_key",
)


def _make_job_is_exact() -> bool:
    """Whether _make_job builds what model_construct builds; checked once at import, so that a
    changed Job model falls back to model_construct instead of building incomplete jobs."""
    args = (
        UUID(int=1),
        UUID(int=2),
        "t",
        {"a": 1},
        2,
        "o",
        3,
        datetime(2030, 1, 1, tzinfo=UTC),
        "q",
        {"m": 1},
        timedelta(seconds=5),
        "k",
    )
    fast = _make_job(*args)
    given: dict[str, Any] = dict(zip(_MADE_FIELDS, args, strict=True))
    slow = Job.model_construct(set(_ALL_JOB_FIELDS), **given)
    return (
        list(fast.__dict__) == list(Job.model_fields)
        and fast.__dict__ == slow.__dict__
        and fast == slow
        and fast.model_fields_set == slow.model_fields_set
        and fast.__pydantic_private__ == slow.__pydantic_private__
        and fast.__pydantic_extra__ == slow.__pydantic_extra__
    )


if _job_fields is not None and not _make_job_is_exact():  # pragma: no cover - a changed Job model
    _job_fields = None


def new_job(
    job_type: str,
    origin: str,
    payload: Any,
    *,
    priority: int = 0,
    start_at: datetime | None = None,
    max_retry_count: int = 0,
    id: UUID | None = None,
    unique_key: str | None = None,
    unique_for: timedelta | float | None = None,
    on_conflict: str = "return",
    queue: str = DEFAULT_QUEUE,
    meta: dict[str, Any] | None = None,
    timeout: timedelta | float | None = None,
    concurrency_key: str | None = None,
) -> Job:
    """Build a validated :class:`Job`, ready for :func:`jobqueue.add`.

    ``payload`` is any JSON value, a pydantic model or a dataclass instance
    (stored as its JSON dump). Higher ``priority`` runs first; ``start_at``
    (timezone-aware) delays the job; ``max_retry_count`` is how many times a
    failed attempt is retried. ``queue`` is the queue workers take it from (see
    :func:`jobqueue.configure_queue` for its limits); ``meta`` a JSON object handed to
    hooks with the job; ``timeout`` (a timedelta or seconds) overrides the job type's
    timeout; ``concurrency_key`` (for example a customer id) groups the jobs that the
    queue's ``per_key_concurrency`` limits.

    ``unique_key`` makes the job unique: while a job with that key is unfinished
    (pending, scheduled, running or retrying), adding another one writes nothing
    and returns the existing job with ``deduplicated=True``, or raises
    :class:`jobqueue.DuplicateJobError` with ``on_conflict="raise"``.
    ``unique_for`` (a timedelta or seconds) also counts the jobs with that key
    created within that period, finished or not.

    Raises InvalidJobError, naming the problem, for an empty or over-long type
    or origin, a naive start_at, or a payload that is not JSON, contains NUL
    characters or exceeds the size limit. Touches no database.
    """
    check_name(job_type, "job type")
    check_name(origin, "origin")
    _check_int(priority, "priority", _INT64_MIN, _INT64_MAX)
    _check_int(max_retry_count, "max_retry_count", 0, _INT32_MAX)
    if start_at is not None:
        start_at = check_start_at(start_at)
    job_id = _check_id(id)
    if queue is not DEFAULT_QUEUE:
        check_queue_name(queue)
    if meta is not None:
        check_meta(meta)
    checked_timeout = check_timeout(timeout) if timeout is not None else None
    if concurrency_key is not None:
        check_concurrency_key(concurrency_key)
    value = to_json_value(payload)
    check_json(value)  # validates; add() encodes, as the payload may change meanwhile
    job = _make_job(
        job_id,
        None,
        job_type,
        value,
        priority,
        origin,
        max_retry_count,
        start_at,
        queue,
        meta,
        checked_timeout,
        concurrency_key,
    )
    if unique_key is not None or unique_for is not None or on_conflict != "return":
        period = check_unique(unique_key, unique_for, on_conflict)
        fields = job.__dict__  # a job _make_job just made: every field is set already
        fields["unique_key"], fields["unique_for"], fields["on_conflict"] = unique_key, period, on_conflict
    return job


def new_job_bundle(
    bundle_type: str,
    origin: str,
    jobs: Sequence[JobDesc],
    *,
    start_at: datetime | None = None,
    id: UUID | None = None,
    queue: str = DEFAULT_QUEUE,
) -> JobBundle:
    """Build a validated :class:`JobBundle` of ``jobs`` (at least one :class:`JobDesc`).

    The bundle is stopped when all its jobs have stopped; bundle listeners and
    bundle handlers then fire once. ``queue`` is the queue of the jobs whose JobDesc
    names none. Raises InvalidJobError as :func:`new_job`
    does, naming the index of a bad job description.
    """
    check_name(bundle_type, "bundle type")
    check_name(origin, "origin")
    start_at = check_start_at(start_at)
    bundle_id = _check_id(id)
    check_queue_name(queue)
    if isinstance(jobs, str | bytes) or not isinstance(jobs, Sequence):
        raise InvalidJobError(f"jobs must be a list of JobDesc, got {type(jobs).__name__}")
    if not jobs:
        raise InvalidJobError("a job bundle needs at least one job")
    built: list[Job] = []
    keys: set[str] = set()
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
                unique_key=desc.unique_key,
                unique_for=desc.unique_for,
                queue=desc.queue if desc.queue is not None else queue,
                meta=desc.meta,
                timeout=desc.timeout,
                concurrency_key=desc.concurrency_key,
            )
        except InvalidJobError as exc:
            raise InvalidJobError(f"jobs[{index}]: {exc}") from exc
        if desc.unique_key is not None:
            if desc.unique_key in keys:
                raise InvalidJobError(
                    f"jobs[{index}]: unique_key {desc.unique_key!r} appears twice in the bundle"
                )
            keys.add(desc.unique_key)
        job.__dict__["bundle_id"] = bundle_id  # a job new_job just made: every field is set already
        built.append(job)
    return JobBundle(id=bundle_id, type=bundle_type, origin=origin, num_jobs=len(built), jobs=built)


def check_job(job: Any) -> str:
    """Validate a Job handed to add() and return its payload as JSON text. Its fields (the
    payload too, even in place) may have been changed since new_job(), so everything is
    checked again, and the payload encoded now is what gets stored."""
    if not isinstance(job, Job):
        raise InvalidJobError(f"expected a jobqueue.Job (see jobqueue.new_job), got {type(job).__name__}")
    if type(job.id) is not UUID:  # assign only when converting: a pydantic setattr is not free
        job.id = check_uuid(job.id, "id")
    if job.bundle_id is not None and type(job.bundle_id) is not UUID:
        job.bundle_id = check_uuid(job.bundle_id, "bundle_id")
    check_name(job.type, "job type")
    check_name(job.origin, "origin")
    _check_int(job.priority, "priority", _INT64_MIN, _INT64_MAX)
    _check_int(job.max_retry_count, "max_retry_count", 0, _INT32_MAX)
    if job.start_at is not None:
        check_start_at(job.start_at)
    if job.unique_key is not None or job.unique_for is not None or job.on_conflict != "return":
        check_unique(job.unique_key, job.unique_for, job.on_conflict)
    if job.queue is not DEFAULT_QUEUE:
        check_queue_name(job.queue)
    if job.meta is not None:
        check_meta(job.meta)
    if job.timeout is not None:
        check_timeout(job.timeout)
    if job.concurrency_key is not None:
        check_concurrency_key(job.concurrency_key)
    return encode_json(job.payload)
