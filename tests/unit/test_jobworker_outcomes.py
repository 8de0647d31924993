"""Outcomes of attempts: error fields, retry rules, default backoff, settings validation."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from jobqueue import Job, new_job
from jobworker import (
    DEFAULT_RETRY_MAX_DELAY,
    InvalidPayloadError,
    OutcomeKind,
    WorkerSettings,
    default_retry_delay,
)
from jobworker._outcomes import error_data, error_message, error_type_name, settle


class QuotaError(Exception):
    pass


def claimed(attempt: int = 1, max_retry_count: int = 0) -> Job:
    job = new_job("t", "test", None, max_retry_count=max_retry_count)
    job.attempt = attempt
    job.claim_token = uuid.uuid4()
    return job


def test_error_message_is_first_line_or_class_name() -> None:
    assert error_message(ValueError("first\nsecond")) == "first"
    assert error_message(QuotaError()) == "QuotaError"
    assert error_message(ValueError("nul\x00inside")) == "nul\ufffdinside"


def test_error_type_is_qualified_class_name() -> None:
    assert error_type_name(ValueError()) == "ValueError"
    assert error_type_name(QuotaError()) == f"{__name__}.QuotaError"
    assert error_type_name(InvalidPayloadError()) == "jobworker.InvalidPayloadError"


def test_error_data_has_type_message_and_traceback() -> None:
    try:
        raise QuotaError("over quota\ndetails")
    except QuotaError as exc:
        data = error_data(exc)
    assert data["type"] == f"{__name__}.QuotaError"
    assert data["message"] == "over quota\ndetails"
    assert "raise QuotaError" in data["traceback"]


def test_success_outcome_carries_the_result() -> None:
    job = claimed()
    outcome = settle(job, '{"a":1}', None, None)
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert (outcome.job_id, outcome.claim_token, outcome.attempt) == (job.id, job.claim_token, 1)
    assert outcome.result_json == '{"a":1}'


def test_error_with_attempts_left_retries_with_default_backoff() -> None:
    outcome = settle(claimed(attempt=1, max_retry_count=1), None, QuotaError("boom"), None)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.error_msg == "boom"
    assert outcome.error_type == f"{__name__}.QuotaError"
    assert outcome.error_data_json is not None
    assert json.loads(outcome.error_data_json)["message"] == "boom"
    assert outcome.retry_delay is not None
    assert timedelta(seconds=0.5) <= outcome.retry_delay <= timedelta(seconds=1.5)


def test_error_without_attempts_left_fails() -> None:
    outcome = settle(claimed(attempt=2, max_retry_count=1), None, QuotaError("boom"), None)
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.retry_delay is None


def test_invalid_payload_fails_without_retry() -> None:
    outcome = settle(claimed(attempt=1, max_retry_count=5), None, InvalidPayloadError("bad"), None)
    assert outcome.kind is OutcomeKind.FAILED


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [
        (1, 0.75, 1.25),
        (2, 1.5, 2.5),
        (3, 3.0, 5.0),
        (10, 400.0, 640.0),
        (13, 2880.0, 3600.0),
        (500, 2880.0, 3600.0),
    ],
)
def test_default_backoff_doubles_with_jitter_and_caps_at_an_hour(
    attempt: int, low: float, high: float
) -> None:
    for _ in range(50):
        delay = default_retry_delay(attempt)
        assert low <= delay.total_seconds() <= high
        assert delay <= DEFAULT_RETRY_MAX_DELAY


def test_retry_scheduler_sets_the_delay_and_sees_the_error() -> None:
    seen: list[str | None] = []

    def in_a_minute(job: Job) -> datetime:
        seen.append(job.error_msg)
        return datetime.now(UTC) + timedelta(minutes=1)

    outcome = settle(claimed(max_retry_count=1), None, QuotaError("boom"), in_a_minute)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.retry_delay is not None
    assert timedelta(seconds=58) < outcome.retry_delay <= timedelta(minutes=1)
    assert seen == ["boom"]


def test_retry_scheduler_in_the_past_retries_at_once() -> None:
    outcome = settle(
        claimed(max_retry_count=1), None, QuotaError("boom"), lambda job: datetime(2000, 1, 1, tzinfo=UTC)
    )
    assert outcome.retry_delay == timedelta(0)


def _raises(job: Job) -> datetime:
    raise RuntimeError("scheduler broke")


@pytest.mark.parametrize(
    ("scheduler", "message"),
    [
        (_raises, "raised RuntimeError: scheduler broke"),
        (lambda job: datetime(2030, 1, 1), "not a timezone-aware datetime"),
        (lambda job: 5, "returned 5, not a timezone-aware datetime"),
    ],
)
def test_misbehaving_retry_scheduler_fails_the_job(scheduler: object, message: str) -> None:
    outcome = settle(claimed(max_retry_count=3), None, QuotaError("boom"), scheduler)  # type: ignore[arg-type]
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.error_msg is not None
    assert message in outcome.error_msg
    assert "boom" in outcome.error_msg


def test_settings_accept_seconds_and_timedeltas() -> None:
    settings = WorkerSettings().replace(job_timeout=2.5, heartbeat_interval=timedelta(seconds=1), dead_for=3)
    assert settings.job_timeout == timedelta(seconds=2.5)
    assert settings.effective_reaper_interval == timedelta(seconds=1)
    assert settings.replace(reaper_interval=7).effective_reaper_interval == timedelta(seconds=7)


def test_dead_for_must_cover_three_heartbeats() -> None:
    with pytest.raises(ValueError, match=r"at least 3 x heartbeat_interval"):
        WorkerSettings().replace(heartbeat_interval=10, dead_for=29)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), True, "5"])
def test_durations_must_be_positive_numbers(bad: object) -> None:
    with pytest.raises(ValueError, match="job_timeout"):
        WorkerSettings().replace(job_timeout=bad)  # type: ignore[arg-type]


def test_configure_keywords_are_the_settings_written_once() -> None:
    import dataclasses
    import inspect

    import jobworker
    from jobworker import SettingsChanges

    assert tuple(SettingsChanges.__annotations__) == tuple(f.name for f in dataclasses.fields(WorkerSettings))
    for fn in (jobworker.configure, jobworker.WorkerPool.configure, WorkerSettings.replace):
        params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
        assert [p.kind for p in params] == [inspect.Parameter.VAR_KEYWORD], fn


def test_replace_names_an_unknown_setting() -> None:
    with pytest.raises(TypeError, match="unknown worker setting 'job_timout'"):
        WorkerSettings().replace(job_timout=3)  # type: ignore[call-arg]
    assert WorkerSettings().replace(prefetch=None, job_timeout=None) == WorkerSettings()
