"""The test modes run an attempt exactly as a worker thread does (one attempt runner)."""

from __future__ import annotations

import logging

import pytest

import jobqueue
from jobqueue import Job
from jobworker import JobContext, Registry, current_job_context
from jobworker_pg import PostgresService
from jobworker_pg._testing import drain


def test_drain_runs_after_hooks_with_the_job_context(
    current: PostgresService, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry()
    seen: list[JobContext] = []
    registry.register("attempt.ok", lambda job: job.payload)

    def after(job: Job, error: BaseException | None) -> None:
        seen.append(current_job_context())

    registry.add_after_job_hook(after)
    job = jobqueue.add(jobqueue.new_job("attempt.ok", "test", 5))
    with caplog.at_level(logging.WARNING):
        ran = drain(registry=registry)
    assert [j.result for j in ran] == [5]
    assert [c.job.id for c in seen] == [job.id]
    assert "outside a job handler" not in caplog.text
