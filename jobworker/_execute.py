"""Running one attempt of a handler: hooks, the call, the result's JSON encoding."""

from __future__ import annotations

import logging

from jobqueue import Job
from jobqueue._payload import encode_json
from jobworker._errors import ErrorReporter
from jobworker._log import job_extra
from jobworker._registry import Handler, Registry

logger = logging.getLogger(__name__)


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
