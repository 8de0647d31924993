"""The ``extra`` every job log record carries: ``job_id``, ``job_type`` and ``action``."""

from __future__ import annotations

from typing import Any

from jobqueue import Job


def job_extra(job: Job, action: str) -> dict[str, Any]:
    """Log record extras for ``job``; ``action`` is claim, start, succeeded, failed, retry,
    timeout, discarded, lost, saved or not-saved."""
    return {"job_id": str(job.id), "job_type": job.type, "action": action}
