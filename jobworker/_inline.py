"""``do_job``: one attempt of a job, inline, without any database."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from jobqueue import Job, RegistrationError
from jobworker._errors import ErrorReporter, Snooze
from jobworker._execute import record_on_job, record_snooze_on_job, run_attempt
from jobworker._log import job_extra
from jobworker._registry import Registry
from jobworker._slots import Run

logger = logging.getLogger(__name__)


def do_job_with(registry: Registry, job: Job, job_timeout: timedelta, report: ErrorReporter) -> Job:
    """Run ``job`` once with ``registry``'s handler and hooks; see :func:`jobworker.do_job`."""
    job, error = run_job_inline_with(registry, job, job_timeout, report)
    if isinstance(error, KeyboardInterrupt):
        raise error
    return job


def run_job_inline_with(
    registry: Registry, job: Job, job_timeout: timedelta, report: ErrorReporter
) -> tuple[Job, BaseException | None]:
    """:func:`do_job_with`, also handing out the handler's exception (None on success)."""
    handler = registry.handler(job.type)
    if handler is None:
        raise RegistrationError(f"no handler is registered for job type {job.type!r}")
    job.attempt += 1
    job.started_at = datetime.now(UTC)
    logger.debug("running job %s inline", job.id, extra=job_extra(job, "start"))
    timeout = job.timeout or handler.timeout or job_timeout  # the job's own, else its type's
    attempt = run_attempt(registry, Run(job, handler, timeout, None), report)
    assert attempt is not None, "a run without in_time always counts"
    if isinstance(attempt.error, Snooze):  # as a worker would: due again later, the attempt given back
        record_snooze_on_job(job, attempt.error)
        logger.info("job %s snoozed: %s", job.id, attempt.error, extra=job_extra(job, "snooze"))
        return job, None
    job.stopped_at = datetime.now(UTC)
    record_on_job(job, attempt)
    if attempt.error is None:
        logger.info("job %s succeeded", job.id, extra=job_extra(job, "succeeded"))
    else:
        logger.info("job %s failed: %s", job.id, job.error_msg, extra=job_extra(job, "failed"))
    return job, attempt.error
