"""How an attempt's result or error becomes an :class:`Outcome`: error fields and retry rules."""

from __future__ import annotations

import json
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

from jobqueue import Job
from jobworker._awaitables import resolve
from jobworker._database import Outcome, OutcomeKind
from jobworker._errors import InvalidPayloadError, Snooze
from jobworker._registry import RetryScheduler
from jobworker.retry import DEFAULT_BASE, DEFAULT_JITTER, DEFAULT_MAX, DEFAULT_STRATEGY, RetryStrategy

DEFAULT_RETRY_BASE_DELAY = DEFAULT_BASE
DEFAULT_RETRY_MAX_DELAY = DEFAULT_MAX
#: Each default delay is multiplied by a random factor in [1 - jitter, 1 + jitter].
DEFAULT_RETRY_JITTER = DEFAULT_JITTER
_MAX_TRACEBACK_CHARS = 64 * 1024


def default_retry_delay(attempt: int) -> timedelta:
    """Exponential backoff with jitter (``jobworker.retry.exponential()``): about 1 s after
    attempt 1, 2 s after attempt 2, 4 s ... capped at 1 hour."""
    delay = DEFAULT_STRATEGY.delay(attempt)
    assert delay is not None
    return delay


def _clean(text: str) -> str:
    """Text jsonb accepts: no NUL characters, no lone surrogates."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def error_type_name(exc: BaseException) -> str:
    """The qualified class name of ``exc`` (``ValueError``, ``app.jobs.QuotaError``)."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def error_message(exc: BaseException) -> str:
    """The first line of ``str(exc)``, or the class name when that is empty."""
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not lose the job's outcome
        text = ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return _clean(first or type(exc).__name__)


def error_data(exc: BaseException) -> dict[str, Any]:
    """``{"type", "message", "traceback"}`` for the job's ``error_data``."""
    try:
        message = str(exc)
    except Exception:
        message = ""
    trace = "".join(traceback.format_exception(exc))
    if len(trace) > _MAX_TRACEBACK_CHARS:
        trace = "...\n" + trace[-_MAX_TRACEBACK_CHARS:]
    return {"type": error_type_name(exc), "message": _clean(message), "traceback": _clean(trace)}


def _failure(job: Job, kind: OutcomeKind, exc: BaseException, delay: timedelta | None = None) -> Outcome:
    assert job.claim_token is not None, "outcomes are for claimed jobs"
    return Outcome(
        job_id=job.id,
        claim_token=job.claim_token,
        kind=kind,
        attempt=job.attempt,
        error_msg=error_message(exc),
        error_type=error_type_name(exc),
        error_data_json=json.dumps(error_data(exc), ensure_ascii=False),
        retry_delay=delay,
        bundle_id=job.bundle_id,
    )


class _NoRetryLeft(Exception):
    """A retry strategy said the job must not be retried (``jobworker.retry.none()``)."""


class RetrySchedulerError(Exception):
    """A retry scheduler raised or returned something that is not an aware datetime."""


def retry_delay(job: Job, scheduler: RetryScheduler | None) -> timedelta:
    """The delay before the next attempt; RetrySchedulerError if ``scheduler`` misbehaves,
    _NoRetryLeft if its strategy says not to retry."""
    if scheduler is None:
        return default_retry_delay(job.attempt)
    if isinstance(scheduler, RetryStrategy):
        delay = scheduler.delay(job.attempt)
        if delay is None:
            raise _NoRetryLeft
        return delay
    try:
        when = resolve(scheduler(job))
    except Exception as exc:
        raise RetrySchedulerError(
            f"retry scheduler of job type {job.type!r} raised {error_type_name(exc)}: "
            f"{error_message(exc)} (the attempt failed with: {job.error_msg})"
        ) from exc
    if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
        raise RetrySchedulerError(
            f"retry scheduler of job type {job.type!r} returned {when!r}, not a timezone-aware "
            f"datetime (the attempt failed with: {job.error_msg})"
        )
    return max(when - datetime.now(UTC), timedelta(0))


def settle(
    job: Job, result_json: str | None, error: BaseException | None, scheduler: RetryScheduler | None
) -> Outcome:
    """The outcome of an attempt of the claimed ``job``.

    Success stores the result; a :class:`jobworker.Snooze` makes the job available again
    after its delay, the attempt uncounted. An error retries while ``job.attempt <=
    job.max_retry_count`` (after the scheduler's or the default delay), else fails
    the job; an invalid payload, or a misbehaving scheduler, fails it at once.
    Sets ``job.error_msg`` before calling the scheduler so it can look at it.
    """
    if isinstance(error, Snooze):
        assert job.claim_token is not None, "outcomes are for claimed jobs"
        return Outcome(
            job.id,
            job.claim_token,
            OutcomeKind.SNOOZE,
            job.attempt,
            error_msg=str(error),
            error_type=error_type_name(error),
            retry_delay=error.delay,
            bundle_id=job.bundle_id,
        )
    if error is None:
        assert job.claim_token is not None, "outcomes are for claimed jobs"
        return Outcome(
            job.id,
            job.claim_token,
            OutcomeKind.SUCCEEDED,
            job.attempt,
            result_json=result_json,
            bundle_id=job.bundle_id,
        )
    if isinstance(error, InvalidPayloadError) or job.attempt > job.max_retry_count:
        return _failure(job, OutcomeKind.FAILED, error)
    job.error_msg = error_message(error)
    try:
        delay = retry_delay(job, scheduler)
    except _NoRetryLeft:
        return _failure(job, OutcomeKind.FAILED, error)
    except RetrySchedulerError as exc:
        return _failure(job, OutcomeKind.FAILED, exc)
    return _failure(job, OutcomeKind.RETRY, error, delay)
