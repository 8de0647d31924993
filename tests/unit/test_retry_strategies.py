"""Retry strategies (jobworker.retry) and Snooze, as the outcome of an attempt and in do_job."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

import jobworker
from jobqueue import Job, RegistrationError, new_job
from jobworker import OutcomeKind, Registry, Snooze, retry
from jobworker._outcomes import settle


def claimed(attempt: int = 1, max_retry_count: int = 5) -> Job:
    job = new_job("t", "test", None, max_retry_count=max_retry_count)
    job.attempt = attempt
    job.claim_token = uuid.uuid4()
    return job


def test_linear_waits_one_more_step_per_attempt_up_to_its_cap() -> None:
    strategy = retry.linear(timedelta(seconds=10), max=timedelta(seconds=25))
    assert [strategy.delay(n) for n in (1, 2, 3, 4)] == [timedelta(seconds=s) for s in (10, 20, 25, 25)]


def test_exponential_doubles_up_to_its_cap() -> None:
    strategy = retry.exponential(2, max=timedelta(seconds=30), jitter=0)
    assert [strategy.delay(n) for n in (1, 2, 3, 4, 5, 100)] == [
        timedelta(seconds=s) for s in (2, 4, 8, 16, 30, 30)
    ]


def test_jitter_spreads_delays_within_its_bounds_and_never_past_the_cap() -> None:
    strategy = retry.linear(100, jitter=0.5)
    delays = {strategy.delay(1) for _ in range(200)}
    assert len(delays) > 100
    assert all(timedelta(seconds=50) <= d <= timedelta(seconds=150) for d in delays if d is not None)
    capped = retry.exponential(1, max=4, jitter=0.5)
    assert all((d := capped.delay(10)) is not None and d <= timedelta(seconds=4) for _ in range(100))


def test_the_default_backoff_is_exponential_from_one_second_to_an_hour() -> None:
    assert timedelta(seconds=0.8) <= jobworker.default_retry_delay(1) <= timedelta(seconds=1.2)
    assert jobworker.default_retry_delay(40) <= timedelta(hours=1)


def test_a_strategy_decides_the_retry_delay_of_an_outcome() -> None:
    outcome = settle(claimed(2), None, ValueError("boom"), retry.linear(30))
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.retry_delay == timedelta(seconds=60)


def test_retry_none_fails_at_the_first_error_despite_max_retry_count() -> None:
    outcome = settle(claimed(1, max_retry_count=5), None, ValueError("boom"), retry.none())
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.error_msg == "boom"


def test_a_strategy_is_also_a_retry_scheduler() -> None:
    job = claimed(1)
    when = retry.linear(60)(job)
    assert timedelta(seconds=59) < when - datetime.now(UTC) <= timedelta(seconds=60)


def test_retry_option_of_register_sets_the_types_strategy() -> None:
    registry = Registry()
    strategy = retry.linear(5)
    registry.register("a", lambda job: None, retry=strategy)

    @registry.job("b", retry=retry.none())
    def b(job: Job) -> None:
        pass

    assert registry.retry_scheduler("a") is strategy
    assert isinstance(registry.retry_scheduler("b"), retry.RetryStrategy)
    with pytest.raises(RegistrationError, match="already has a retry scheduler"):
        registry.register_schedule_retry("a", retry.none())
    registry.unregister("a")
    assert registry.retry_scheduler("a") is None


@pytest.mark.parametrize(
    "make", [lambda: retry.linear(0), lambda: retry.exponential(-1), lambda: retry.linear(1, jitter=1.5)]
)
def test_bad_strategy_arguments_are_rejected(make: object) -> None:
    with pytest.raises(RegistrationError):
        make()  # type: ignore[operator]


def test_snooze_outcome_makes_the_job_due_later_without_an_error() -> None:
    outcome = settle(claimed(3, max_retry_count=0), None, Snooze(timedelta(minutes=5)), None)
    assert outcome.kind is OutcomeKind.SNOOZE
    assert outcome.retry_delay == timedelta(minutes=5)
    assert outcome.error_type == "jobworker.Snooze"


def test_snooze_rejects_a_negative_delay() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        Snooze(-1)


def test_do_job_of_a_snoozing_handler_gives_the_attempt_back() -> None:
    registry = Registry()

    def later(job: Job) -> None:
        raise Snooze(30)

    registry.register("s", later)
    pool = jobworker.WorkerPool(registry=registry)
    job = pool.do_job(new_job("s", "test", None))
    assert job.attempt == 0 and job.error_msg is None and job.stopped_at is None
    assert job.start_at is not None and job.start_at > datetime.now(UTC) + timedelta(seconds=25)
    assert [e.message for e in job.errors] == ["snoozed for 30 s"]
