"""Helpers for users' tests: run queued jobs now (:func:`drain`) and check what was enqueued
(:func:`assert_enqueued`). The pytest plugin re-exports them; they work without pytest too."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import jobqueue
import jobworker
from jobqueue import InvalidJobError, Job, JobFailedError, JobState
from jobqueue._payload import to_json_value

# The worker runtime's own pieces, so a drained job runs exactly as on a worker thread
# (hooks, job context with the database for bundle handlers, retry rules).
from jobworker._errors import ErrorReporter
from jobworker._execute import record_on_job, run_attempt
from jobworker._slots import Run
from jobworker_pg import _testmodes as testmodes
from jobworker_pg._service import PostgresService

logger = logging.getLogger(__name__)

DEFAULT_MAX_JOBS = 10_000


class UnservedJobsWarning(UserWarning):
    """:func:`drain` left due jobs alone because no handler is registered for their type."""


class _Missing:
    def __repr__(self) -> str:
        return "<any payload>"


_MISSING: Any = _Missing()


def _postgres_service(service: PostgresService | None, what: str) -> PostgresService:
    if service is not None:
        return service
    current = jobqueue.get_service()
    if not isinstance(current, PostgresService):
        raise TypeError(
            f"{what} needs a PostgresService: pass service=, or make one current "
            f"(the jobqueue_service fixture, jobqueue.use_service); the current one is {current!r}"
        )
    return current


def drain(
    service: PostgresService | None = None,
    *,
    include_scheduled: bool = False,
    raise_errors: bool = True,
    registry: jobworker.Registry | None = None,
    max_jobs: int = DEFAULT_MAX_JOBS,
) -> list[Job]:
    """Run every due job now, one at a time, on the calling thread; return the attempts run.

    Claims through ``service`` (default: the current service) the jobs whose
    type ``registry`` (default: jobworker's) handles, highest priority first,
    runs each as a worker thread would (hooks, retry rules, durable bundle
    handlers) and saves its outcome; jobs the handlers add are drained too.
    With ``include_scheduled`` jobs scheduled for later and failed jobs waiting
    for a retry run as if their time had come (their ``start_at`` becomes now),
    so a failing job runs until its retries are used up. The returned jobs carry
    the attempt's ``result`` or ``error_msg``. With ``raise_errors`` (the
    default) a failed attempt raises :class:`jobqueue.JobFailedError` once
    everything has run, with the first handler exception as ``__cause__``.
    Raises RuntimeError after ``max_jobs`` attempts (a handler that keeps
    adding jobs). Not for use while worker threads run on the same database.
    """
    svc = _postgres_service(service, "drain()")
    reg = registry if registry is not None else jobworker.default_registry()
    job_types = reg.registered_job_types()
    ran = []
    if job_types:
        ran = _drain_registered(svc, reg, job_types, include_scheduled, raise_errors, max_jobs)
    _warn_about_unserved(svc, job_types, include_scheduled)
    return ran


def _drain_registered(
    svc: PostgresService,
    reg: jobworker.Registry,
    job_types: list[str],
    include_scheduled: bool,
    raise_errors: bool,
    max_jobs: int,
) -> list[Job]:
    svc.declare_bundle_handlers(reg.bundle_handler_retries())
    job_timeout = jobworker.default_pool().settings.job_timeout
    report = ErrorReporter()
    ran: list[Job] = []
    first_failure: tuple[Job, BaseException] | None = None
    while True:
        if include_scheduled:
            svc.make_jobs_due(job_types)
        claimed = svc.claim_jobs(job_types, 1)
        if not claimed:
            break
        if len(ran) >= max_jobs:
            raise RuntimeError(f"drain() ran {max_jobs} jobs and more keep coming; is a handler looping?")
        job = claimed[0]
        handler = reg.handler(job.type)
        assert handler is not None, "claimed only registered types"
        attempt = run_attempt(reg, Run(job, handler, handler.timeout or job_timeout, svc), report)
        assert attempt is not None and attempt.outcome is not None, "a claimed run always counts"
        outcome, error = attempt.outcome, attempt.error
        svc.save_outcomes([outcome])
        record_on_job(job, attempt)
        ran.append(job)
        if error is not None:
            logger.info("drain: job %s of type %s failed: %s", job.id, job.type, outcome.error_msg)
            if first_failure is None:
                first_failure = (job, error)
        if isinstance(error, KeyboardInterrupt):
            raise error
    if raise_errors and first_failure is not None:
        job, error = first_failure
        raise JobFailedError(job.type, job.id, job.error_msg or type(error).__name__) from error
    return ran


def _warn_about_unserved(svc: PostgresService, job_types: list[str], include_scheduled: bool) -> None:
    """Warn when due jobs were left because their type has no handler: a test whose drain()
    returns nothing should say why (a typo in the type, or a handler never registered)."""
    waiting = {JobState.PENDING}
    if include_scheduled:
        waiting |= {JobState.SCHEDULED, JobState.RETRYING}
    served = set(job_types)
    unserved: dict[str, int] = {}
    for job in svc.get_all_jobs_to_do():
        if job.type not in served and job.state in waiting:
            unserved[job.type] = unserved.get(job.type, 0) + 1
    if unserved:
        listing = ", ".join(f"{count} of type {job_type!r}" for job_type, count in sorted(unserved.items()))
        registered = ", ".join(map(repr, job_types)) or "none"
        warnings.warn(
            f"drain() left {listing}: no handler is registered for them (registered: {registered}); "
            "register one (@jobworker.job(...)) or pass registry=",
            UnservedJobsWarning,
            stacklevel=3,
        )


def enqueued(job_type: str | None = None, *, service: PostgresService | None = None) -> list[Job]:
    """The jobs enqueued so far (of ``job_type``, if given): those in the database of
    ``service`` (default: the current service, if it is a PostgresService), oldest
    first, then those this test's context ran inline or ignored under a test mode."""
    jobs: dict[Any, Job] = {}
    current = service if service is not None else jobqueue.get_service()
    if isinstance(current, PostgresService):
        jobs.update((j.id, j) for j in current.get_all_jobs())
    for job in testmodes.recorded_jobs() or ():
        jobs.setdefault(job.id, job)
    return [j for j in jobs.values() if job_type is None or j.type == job_type]


def _describe(job: Job) -> str:
    payload = repr(job.payload)
    if len(payload) > 200:
        payload = payload[:197] + "..."
    if job.created_at is not None:
        where = job.state.value
    elif job.stopped_at is not None:
        where = f"ran inline: {job.state.value}"
    else:
        where = "ignored by a test mode"
    return f"  - {job.type} {payload} ({where}, id {job.id})"


def assert_enqueued(
    job_type: str | None = None,
    payload: Any = _MISSING,
    *,
    count: int | None = None,
    service: PostgresService | None = None,
) -> list[Job]:
    """Assert that a job of ``job_type`` with ``payload`` was enqueued (see :func:`enqueued`)
    and return the matching jobs; ``count`` asks for exactly that many.

    ``payload`` is compared with ``==`` after conversion to JSON values (a pydantic
    model or dataclass compares as its dump), so ``unittest.mock.ANY`` works inside
    it. The AssertionError lists every job that was enqueued.
    """
    if payload is _MISSING:
        expected = _MISSING
    else:
        try:
            expected = to_json_value(payload)
        except InvalidJobError:  # not JSON (mock.ANY inside, say): compare as given
            expected = payload
    every = enqueued(service=service)
    matches = [
        j
        for j in every
        if (job_type is None or j.type == job_type) and (expected is _MISSING or j.payload == expected)
    ]
    if (count is None and matches) or (count is not None and len(matches) == count):
        return matches
    wanted = []
    if job_type is not None:
        wanted.append(f"type {job_type!r}")
    if expected is not _MISSING:
        wanted.append(f"payload {expected!r}")
    what = " and ".join(wanted) or "any type"
    if count is None:
        head = f"no job with {what} was enqueued"
    else:
        head = f"expected {count} job(s) with {what}, found {len(matches)}"
    listing = "\n".join(map(_describe, every)) if every else "  (none)"
    raise AssertionError(f"{head}; enqueued jobs ({len(every)}):\n{listing}")
