"""``do_job``: one attempt of a job, inline, without any database."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from jobqueue import AttemptError, Job, RegistrationError
from jobworker._context import JobContext, use_context
from jobworker._errors import ErrorReporter
from jobworker._execute import call_handler, run_after_hooks, run_before_hooks
from jobworker._log import job_extra
from jobworker._outcomes import error_data, error_message, error_type_name
from jobworker._registry import Registry

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
    now = datetime.now(UTC)
    job.attempt += 1
    job.started_at = now
    context = JobContext(job, now + (handler.timeout or job_timeout), database=None)
    logger.debug("running job %s inline", job.id, extra=job_extra(job, "start"))
    with use_context(context):
        run_before_hooks(registry, job, report)
        result_json, error = call_handler(handler, job)
        run_after_hooks(registry, job, error, report)
    job.stopped_at = datetime.now(UTC)
    if error is None:
        job.result = None if result_json is None else json.loads(result_json)
        job.error_msg = None
        job.error_data = None
        logger.info("job %s succeeded", job.id, extra=job_extra(job, "succeeded"))
        return job, None
    job.result = None
    job.error_msg = error_message(error)
    job.error_data = error_data(error)
    job.errors = [
        *job.errors,
        AttemptError(
            attempt=job.attempt, at=job.stopped_at, message=job.error_msg, type=error_type_name(error)
        ),
    ]
    logger.info("job %s failed: %s", job.id, job.error_msg, extra=job_extra(job, "failed"))
    return job, error
