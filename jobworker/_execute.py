"""Running one attempt of a handler: hooks, the call, the result's JSON encoding.

:func:`run_attempt` is the one attempt runner: worker threads, :func:`jobworker.do_job`
and the test modes of jobworker_pg (``drain``, ``synchronous_jobs``) all go through it,
so a handler and its hooks see the same job context wherever they run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from jobqueue import AttemptError, Job
from jobqueue._payload import encode_json
from jobworker._context import use_context
from jobworker._database import Outcome
from jobworker._errors import ErrorReporter, JobTimeoutError, Snooze
from jobworker._log import job_extra
from jobworker._outcomes import error_data, error_message, error_type_name, settle
from jobworker._registry import Handler, Registry
from jobworker._slots import Run, RunState

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Attempt:
    """What one attempt of a handler produced."""

    result_json: str | None  # the result as JSON text (None: JSON null, or an error)
    error: BaseException | None  # what the handler raised, None on success
    outcome: Outcome | None  # what to write for a claimed job (None for a job run without a claim)


#: Says whether the handler of a run returned in time (its result counts); the pool's
#: :meth:`Slots.handler_returned`. A run without one always counts.
InTime = Callable[[Run], bool]


def run_attempt(
    registry: Registry, run: Run, report: ErrorReporter, in_time: InTime | None = None
) -> Attempt | None:
    """Run one attempt of ``run.job``: before hooks, the handler, after hooks, all with the
    run's :class:`JobContext` current; for a claimed job, also settle its outcome
    (retry rules of ``registry``).

    When ``in_time`` says the result no longer counts (the attempt timed out, or the pool
    stopped hard), the late result is discarded, the after hooks see the timeout error
    if the attempt timed out, and None is returned. Never raises for the handler or a hook.
    """
    job = run.job
    with use_context(run.context):
        run_before_hooks(registry, job, report)
        result_json, error = call_handler(run.handler, job)
        if in_time is not None and not in_time(run):
            logger.warning(
                "discarding the late %s of job %s: the attempt already ended (%s)",
                "result" if error is None else "error",
                job.id,
                run.state.value,
                extra=job_extra(job, "discarded"),
            )
            if run.state is RunState.TIMED_OUT:
                run_after_hooks(registry, job, JobTimeoutError(timeout_message(run)), report)
            return None
        run_after_hooks(registry, job, error, report)
    outcome = None
    if job.claim_token is not None:
        outcome = settle(job, result_json, error, registry.retry_scheduler(job.type))
    return Attempt(result_json, error, outcome)


def record_on_job(job: Job, attempt: Attempt) -> None:
    """Set the attempt's result or error on ``job`` itself (as a stored job would show it),
    for callers that hand the job back: do_job, drain."""
    error = attempt.error
    if error is None:
        job.result = None if attempt.result_json is None else json.loads(attempt.result_json)
        job.error_msg = None
        job.error_data = None
        return
    job.result = None
    job.error_msg = error_message(error)
    job.error_data = error_data(error)
    if job.stopped_at is not None:
        job.errors = [
            *job.errors,
            AttemptError(
                attempt=job.attempt, at=job.stopped_at, message=job.error_msg, type=error_type_name(error)
            ),
        ]


def record_snooze_on_job(job: Job, snooze: Snooze) -> None:
    """Record a :class:`jobworker.Snooze` on ``job`` as save_outcomes does in the database:
    due again after the delay, its attempt given back, the snooze in the history."""
    now = datetime.now(UTC)
    job.errors = [
        *job.errors,
        AttemptError(attempt=job.attempt, at=now, message=str(snooze), type="jobworker.Snooze"),
    ]
    job.attempt -= 1
    job.started_at = None
    job.start_at = now + snooze.delay


def timeout_message(run: Run) -> str:
    """The error message of an attempt that ran past its timeout."""
    return f"job {run.job.id} of type {run.job.type!r} ran longer than its timeout of {run.timeout}"


def run_before_hooks(registry: Registry, job: Job, report: ErrorReporter) -> None:
    """Run the before hooks of ``job``'s type; failures are reported, never raised."""
    for hook in registry.before_job_hooks(job.type):
        try:
            hook(job)
        except Exception as exc:
            logger.warning("before_job hook failed for job %s", job.id, extra=job_extra(job, "hook-failed"))
            report(exc, f"before_job hook {getattr(hook, '__qualname__', hook)!r} for job {job.id}")


def run_after_hooks(registry: Registry, job: Job, error: BaseException | None, report: ErrorReporter) -> None:
    """Run the after hooks of ``job``'s type; failures are reported, never raised."""
    for hook in registry.after_job_hooks(job.type):
        try:
            hook(job, error)
        except Exception as exc:
            logger.warning("after_job hook failed for job %s", job.id, extra=job_extra(job, "hook-failed"))
            report(exc, f"after_job hook {getattr(hook, '__qualname__', hook)!r} for job {job.id}")


def call_handler(handler: Handler, job: Job) -> tuple[str | None, BaseException | None]:
    """Call the handler; return (result JSON, None) or (None, the error).

    Any BaseException is caught (KeyboardInterrupt, SystemExit included) so the
    calling thread lives on. A result that is not JSON-serialisable is an error.
    """
    try:
        result = handler.call(job)
        return encode_json(result, "result"), None
    except BaseException as exc:
        return None, exc
