"""ErrorReporter: every error reaches on_error; the log repeats an error at a bounded rate."""

from __future__ import annotations

import logging

import pytest

from jobworker import _errors
from jobworker._errors import ErrorReporter


def test_a_repeated_error_is_logged_once_per_window_and_every_time_to_the_callback(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("jobworker._errors.time.monotonic", lambda: clock[0])
    seen: list[BaseException] = []
    reporter = ErrorReporter()
    reporter.set_callback(seen.append)
    caplog.set_level(logging.ERROR, logger="jobworker._errors")
    for i in range(10):
        reporter(ConnectionError("db down"), f"saving {i} job outcomes (will retry in 0.{i}s)")
        clock[0] += 1.0
    reporter(TimeoutError("slow"), "sending the heartbeat")  # another error: logged at once
    clock[0] += _errors.REPEAT_LOG_SECONDS
    reporter(ConnectionError("db down"), "saving 3 job outcomes (will retry in 5.0s)")
    assert len(seen) == 12
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert messages[0].startswith("saving 0 job outcomes") and caplog.records[0].exc_info is not None
    assert "TimeoutError: slow" in messages[1]
    assert messages[2].endswith("(9 more like this in the last 30 s)")
    assert caplog.records[2].exc_info is None


def test_the_repeat_filter_stays_bounded_for_errors_about_many_jobs() -> None:
    import uuid

    reporter = ErrorReporter()
    for _ in range(10_000):
        reporter(ValueError("hook broke"), f"after_job hook 'audit' for job {uuid.uuid4()}")
    assert reporter.tracked() == 1  # the job id is blanked: one failure, many jobs
    for i in range(10_000):
        reporter(ValueError("broke"), f"after_job hook 'h{chr(65 + i % 26)}{i:x}' for a job")
    assert reporter.tracked() <= _errors.MAX_TRACKED_ERRORS


def test_a_retried_failure_is_a_warning_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    reporter = ErrorReporter()
    caplog.set_level(logging.WARNING, logger="jobworker._errors")
    reporter(ConnectionError("db down"), "claiming jobs (retrying in 0.1s)", retrying=True)
    reporter(ConnectionError("db down"), "giving back 3 claims")
    (retried, final) = caplog.records
    assert (retried.levelno, retried.exc_info) == (logging.WARNING, None)
    assert final.levelno == logging.ERROR and final.exc_info is not None
