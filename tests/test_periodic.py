"""Periodic jobs on a real PostgreSQL: ticks enqueued once by racing schedulers, catch-up after
an outage (an injected clock, not real waiting), enable/disable, management, the pool's thread."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import jobqueue
import jobworker
from jobqueue import JobNotFoundError
from jobworker import PeriodicScheduler, PeriodicSpec, Registry, WorkerPool
from jobworker._errors import ErrorReporter
from jobworker._periodic import CATCH_UP_GRACE, periodic_spec
from jobworker_pg import PostgresService

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # in the past: enable_periodic compares with the database clock
STEP = timedelta(minutes=5)


class Clock:
    """A settable clock for schedulers."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _spec(catch_up: str = "latest", name: str = "report", **kwargs: Any) -> PeriodicSpec:
    return periodic_spec(
        name, jobworker.every(STEP), "report.build", payload={"k": 1}, catch_up=catch_up, **kwargs
    )


def _scheduler(service: PostgresService, spec: PeriodicSpec, clock: Clock) -> PeriodicScheduler:
    return PeriodicScheduler(service, [spec], ErrorReporter(), "test-periodic", clock)


def _ticks(db_url: str, job_type: str = "report.build") -> list[datetime]:
    with psycopg.connect(db_url) as c:
        rows = c.execute(
            "select scheduled_for from worker.job where type = %s and origin = 'periodic'"
            " order by scheduled_for",
            (job_type,),
        ).fetchall()
    return [r[0] for r in rows]


def test_the_first_tick_is_the_first_after_the_schedule_was_declared(
    service: PostgresService, db_url: str
) -> None:
    clock = Clock(T0 + STEP - timedelta(seconds=20))
    scheduler = _scheduler(service, _spec(), clock)
    wait = scheduler.run_once()
    assert _ticks(db_url) == []
    assert wait == timedelta(seconds=20)  # sleeps until the next tick
    clock.now = T0 + STEP + timedelta(milliseconds=5)
    scheduler.run_once()
    assert _ticks(db_url) == [T0 + STEP]
    job = service.get_all_jobs()[0]
    assert job.scheduled_for == T0 + STEP
    assert job.payload == {"k": 1}
    assert job.unique_key == f"periodic:report@{(T0 + STEP).isoformat()}"


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [("latest", [T0 + STEP * 10]), ("all", [T0 + STEP * k for k in range(1, 11)]), ("none", [])],
)
def test_catch_up_after_a_ten_tick_outage(
    service: PostgresService, db_url: str, catch_up: str, expected: list[datetime]
) -> None:
    clock = Clock(T0)
    scheduler = _scheduler(service, _spec(catch_up), clock)
    scheduler.run_once()  # declared at T0; then no worker runs for ten ticks
    clock.now = T0 + STEP * 10 + CATCH_UP_GRACE + timedelta(seconds=1)
    scheduler.run_once()
    assert _ticks(db_url) == expected
    clock.now = T0 + STEP * 11 + timedelta(seconds=1)  # and from then on, one job per tick
    scheduler.run_once()
    assert _ticks(db_url) == [*expected, T0 + STEP * 11]


def test_racing_schedulers_enqueue_each_tick_once(db_url: str) -> None:
    services = [PostgresService(db_url) for _ in range(4)]
    try:
        clocks = [Clock(T0) for _ in services]
        schedulers = [_scheduler(s, _spec("all"), c) for s, c in zip(services, clocks, strict=True)]
        for scheduler in schedulers:
            scheduler.run_once()  # declared at T0
        errors: list[BaseException] = []
        for k in range(1, 31):
            start = threading.Barrier(len(schedulers))

            def run(scheduler: PeriodicScheduler, clock: Clock, k: int = k, start: Any = start) -> None:
                clock.now = T0 + STEP * k + timedelta(milliseconds=k % 7)
                try:
                    start.wait(timeout=30)
                    scheduler.run_once()
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=sc) for sc in zip(schedulers, clocks, strict=True)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
        assert not errors
        ticks = _ticks(db_url)
        assert Counter(ticks).most_common(1)[0][1] == 1
        assert ticks == [T0 + STEP * k for k in range(1, 31)]
    finally:
        for s in services:
            s.close()


def test_a_disabled_schedule_enqueues_nothing_until_enabled(service: PostgresService, db_url: str) -> None:
    clock = Clock(T0)
    scheduler = _scheduler(service, _spec("all"), clock)
    scheduler.run_once()
    info = jobqueue.PeriodicInfo.model_validate(service.disable_periodic("report"))
    assert info.enabled is False and info.next_run is None
    clock.now = T0 + STEP * 3 + timedelta(seconds=1)
    scheduler.run_once()
    assert _ticks(db_url) == []
    enabled_at = datetime.now(UTC)
    service.enable_periodic("report")  # the months of ticks while disabled are not caught up
    clock.now = datetime.now(UTC) + STEP + timedelta(seconds=1)
    scheduler.run_once()
    ticks = _ticks(db_url)
    assert 1 <= len(ticks) <= 2  # the ticks of one STEP after enabling
    assert all(t > enabled_at - timedelta(seconds=5) for t in ticks)


def test_a_stored_disable_wins_over_the_code_enabled_default(service: PostgresService) -> None:
    clock = Clock(T0)
    _scheduler(service, _spec(), clock).run_once()
    service.disable_periodic("report")
    _scheduler(service, _spec(), clock).run_once()  # a restarted worker declares it again
    assert service.get_periodic("report").enabled is False
    _scheduler(service, _spec(name="off", enabled=False), clock).run_once()
    assert service.get_periodic("off").enabled is False


def test_list_periodic_shows_schedule_last_tick_next_run_and_orphans(current: PostgresService) -> None:
    clock = Clock(datetime.now(UTC))
    scheduler = _scheduler(current, _spec(), clock)
    scheduler.run_once()
    clock.now += STEP
    scheduler.run_once()
    [info] = jobqueue.list_periodic()
    assert info.name == "report"
    assert info.schedule == "@every 300s"
    assert info.job_type == "report.build"
    assert info.enabled and not info.orphaned
    assert info.last_tick is not None
    assert info.next_run == info.last_tick + STEP
    assert jobqueue.next_run("report") == info.next_run
    with psycopg.connect(current.conninfo, autocommit=True) as c:
        c.execute("update worker.schedule set seen_at = now() - interval '11 minutes'")
    assert jobqueue.get_periodic("report").orphaned
    jobqueue.delete_periodic("report")
    assert jobqueue.list_periodic() == []
    with pytest.raises(JobNotFoundError):
        jobqueue.delete_periodic("report")


def test_run_periodic_now_enqueues_one_job_without_moving_the_ticks(
    current: PostgresService, db_url: str
) -> None:
    clock = Clock(T0)
    _scheduler(current, _spec(), clock).run_once()
    job = jobqueue.run_periodic_now("report")
    assert job.type == "report.build" and job.payload == {"k": 1}
    assert job.scheduled_for is not None
    assert current.get_periodic("report").last_tick is None
    with pytest.raises(JobNotFoundError):
        jobqueue.run_periodic_now("nope")
    with pytest.raises(jobqueue.InvalidJobError):
        jobqueue.enable_periodic("")


def test_a_pool_runs_its_schedules_every_second(db_url: str) -> None:
    registry = Registry()
    ran: list[datetime | None] = []
    done = threading.Event()

    @registry.periodic(jobworker.every(1), catch_up="all")
    @registry.job("tick.test")
    def tick(job: jobqueue.Job) -> None:
        ran.append(job.scheduled_for)
        if len(ran) >= 2:
            done.set()

    service = PostgresService(db_url)
    pool = WorkerPool(service, registry, name="periodic-pool")
    try:
        pool.start_threads(2)
        assert done.wait(30)
    finally:
        pool.finish_threads(10)
        service.close()
    assert [s.name for s in registry.periodic_specs()] == ["tick.test"]
    assert all(t is not None and t.microsecond == 0 for t in ran)
    assert len(set(ran)) == len(ran)


def test_periodic_decorator_registers_an_unregistered_function(db_url: str) -> None:
    registry = Registry()

    @registry.periodic("@daily", name="nightly.cleanup", timezone="Europe/Berlin")
    def cleanup(job: jobqueue.Job) -> None:
        pass

    assert registry.is_registered("nightly.cleanup")
    [spec] = registry.periodic_specs()
    assert spec.job_type == "nightly.cleanup" and spec.timezone == "Europe/Berlin"
    with pytest.raises(jobqueue.RegistrationError, match="already registered"):
        registry.register_periodic("nightly.cleanup", "@hourly", "x")
    registry.unregister("nightly.cleanup")
    assert registry.periodic_specs() == []
