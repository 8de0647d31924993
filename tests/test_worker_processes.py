"""The worker guarantees with real processes: drains, SIGKILL, poison pills, server restarts.

Handlers (tests/worker_app.py) log each run over their own connection in
``exec_log``, so the assertions count runs and look for overlapping ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from helpers import wait_for as wait_until
from processes import ThrowawayPostgres, WorkerProcess, scalar

import jobqueue
import jobworker
from jobqueue import JobState
from jobworker_pg import PostgresService

pytestmark = pytest.mark.slow

# For tests that kill workers: a dead worker's job is reaped quickly.
FAST = {"JQ_HEARTBEAT": "0.25", "JQ_DEAD_FOR": "1.5", "JQ_REAPER": "0.25"}
DEAD_FOR, REAPER = 1.5, 0.25
# For drains and restarts: on a loaded 2-core machine a live worker may be starved for over a
# second; a realistic dead_for keeps such workers from being taken for dead.
STEADY = {"JQ_HEARTBEAT": "0.5", "JQ_DEAD_FOR": "10", "JQ_REAPER": "0.5"}


def add_exec_jobs(service: PostgresService, n: int, sleep: float = 0.0, **kw: Any) -> list[jobqueue.Job]:
    return service.add_jobs(
        [jobqueue.new_job("exec", "test", {"i": i, "sleep": sleep}, **kw) for i in range(n)]
    )


def unfinished(url: str) -> int:
    return int(scalar(url, "select count(*) from worker.job where stopped_at is null"))


def overlapping_runs(url: str) -> int:
    """Pairs of attempts of one job whose [start, end] intervals overlap (killed runs, with no end, aside)."""
    return int(
        scalar(
            url,
            """
            select count(*) from exec_log a join exec_log b
              -- different attempts: a log insert retried after a cut connection may repeat a row
              on a.job_id = b.job_id and a.attempt < b.attempt
            where a.started_at < coalesce(b.ended_at, 'infinity')
              and b.started_at < coalesce(a.ended_at, 'infinity')
              and a.ended_at is not null and b.ended_at is not null
            """,
        )
    )


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.kill()


@pytest.mark.parametrize("prefetch", ["0", "16"])
def test_four_processes_drain_5000_jobs_each_exactly_once(
    service: PostgresService, db_url: str, workers: list[WorkerProcess], prefetch: str
) -> None:
    workers.extend(WorkerProcess(db_url, 4, **STEADY, JQ_PREFETCH=prefetch) for _ in range(4))
    for w in workers:
        w.wait_ready()
    add_exec_jobs(service, 5000)
    wait_until(lambda: unfinished(db_url) == 0, 180, "5000 jobs drained")
    for w in workers:
        assert w.terminate() == 0, w.log()
    assert scalar(db_url, "select count(*) from exec_log") == 5000
    assert scalar(db_url, "select count(distinct job_id) from exec_log") == 5000
    assert overlapping_runs(db_url) == 0
    status = service.get_status()
    assert status.succeeded == 5000 and status.total == 5000
    # Every process took part.
    assert scalar(db_url, "select count(distinct pid) from exec_log") == 4
    assert scalar(db_url, "select max(attempt) from worker.job") == 1  # nothing reaped or given back


def _kill_mid_job(
    service: PostgresService, db_url: str, workers: list[WorkerProcess], restart: bool
) -> float:
    victim = WorkerProcess(db_url, 1, **FAST).wait_ready()
    workers.append(victim)
    # The first attempt outlasts the kill however slowly the second worker starts.
    (job,) = service.add_jobs(
        [jobqueue.new_job("exec", "test", {"first_sleep": 120, "sleep": 0}, max_retry_count=2)]
    )
    wait_until(
        lambda: scalar(db_url, "select count(*) from exec_log where job_id = %s", (job.id,)), 20, "job start"
    )
    if not restart:
        workers.append(WorkerProcess(db_url, 1, **FAST).wait_ready())  # a live worker, never killed
    victim.kill()
    killed_at = scalar(db_url, "select clock_timestamp()")
    if restart:
        workers.append(WorkerProcess(db_url, 1, **FAST).wait_ready())
    wait_until(lambda: service.get_job(job.id).stopped, 30, "killed job completes")
    done = service.get_job(job.id)
    assert done.state is JobState.SUCCEEDED, done
    assert done.attempt == 2
    assert [e.type for e in done.errors] == ["WorkerLost"]
    rerun = scalar(db_url, "select max(started_at) from exec_log where job_id = %s", (job.id,))
    assert isinstance(rerun, datetime) and isinstance(killed_at, datetime)
    return (rerun - killed_at).total_seconds()


def test_sigkilled_workers_job_runs_again_on_a_live_worker_within_dead_for_plus_reaper(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    recovery = _kill_mid_job(service, db_url, workers, restart=False)
    # dead_for + one reaper interval, plus the heartbeat phase and claim latency.
    assert recovery < DEAD_FOR + REAPER + 1.0, recovery
    print(f"recovery after SIGKILL, live worker: {recovery:.2f} s")


def test_sigkilled_worker_restarted_picks_its_job_up_again(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    recovery = _kill_mid_job(service, db_url, workers, restart=True)
    # A restarted worker waits dead_for before its first reap (start-up counts as an outage).
    assert recovery < 2 * DEAD_FOR + REAPER + 5.0, recovery  # + process start-up
    print(f"recovery after SIGKILL, restarted worker: {recovery:.2f} s")


def test_poison_pill_ends_failed_after_its_attempts(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    job = service.add_job(jobqueue.new_job("exit", "test", None, max_retry_count=1))
    healthy = add_exec_jobs(service, 20, max_retry_count=3)  # may share the dying process
    for _ in range(2):  # each attempt kills the worker that claimed it
        w = WorkerProcess(db_url, 2, **FAST).wait_ready()
        workers.append(w)
        assert w.proc.wait(30) == 1
    workers.append(WorkerProcess(db_url, 2, **FAST).wait_ready())  # reaps the last attempt
    wait_until(lambda: service.get_job(job.id).stopped, 30, "poison pill ends")
    failed = service.get_job(job.id)
    assert failed.state is JobState.FAILED and failed.attempt == 2
    assert failed.error_msg is not None and failed.error_msg.startswith("worker lost")
    wait_until(lambda: all(service.get_job(j.id).succeeded for j in healthy), 30, "other jobs finish")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_during_a_drain_loses_no_job(
    throwaway: ThrowawayPostgres, workers: list[WorkerProcess], mode: str
) -> None:
    url = throwaway.new_database()
    with PostgresService(url) as service:
        jobs = add_exec_jobs(service, 2000, sleep=0.002)
    workers.append(WorkerProcess(url, 4, **STEADY, JQ_POLL="0.5").wait_ready())
    wait_until(lambda: scalar(url, "select count(*) from exec_log") >= 300, 60, "drain under way")
    stopped = time.monotonic()
    throwaway.restart(mode)
    wait_until(
        lambda: scalar(url, "select count(*) from exec_log where started_at > now() - interval '0.5 s'"),
        60,
        "work resumes",
    )
    back_after = time.monotonic() - stopped
    wait_until(lambda: unfinished(url) == 0, 120, "drain completes")
    assert workers[-1].proc.poll() is None, "the worker must survive the restart"
    with psycopg.connect(url) as conn:
        bad = conn.execute(
            "select id, attempt, error_msg, errors from worker.job where error_msg is not null"
        ).fetchall()
    assert bad == [], (bad, workers[-1].log()[-3000:])
    assert scalar(
        url, "select count(*) from worker.job where error_msg is null and stopped_at is not null"
    ) == len(jobs)
    assert scalar(url, "select count(distinct job_id) from exec_log") == len(jobs)
    assert overlapping_runs(url) == 0
    assert workers[-1].terminate() == 0, workers[-1].log()
    print(f"restart -m {mode}: back to work after {back_after:.2f} s")


def test_job_added_after_listen_backend_is_terminated_is_picked_up(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    w = WorkerProcess(db_url, 2, **FAST).wait_ready()  # no polling: only LISTEN wakes it
    workers.append(w)
    (warm,) = add_exec_jobs(service, 1)
    wait_until(lambda: service.get_job(warm.id).stopped, 20, "first job")
    killed = scalar(
        db_url,
        "select count(pg_terminate_backend(pid)) from pg_stat_activity "
        "where application_name = 'jobqueue-listen' and datname = current_database()",
    )
    assert killed >= 1
    (job,) = add_exec_jobs(service, 1)
    start = time.monotonic()
    wait_until(lambda: service.get_job(job.id).stopped, 15, "job after LISTEN backend was killed")
    assert time.monotonic() - start < 10


def test_sigterm_finishes_in_flight_jobs_and_exits_zero(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    w = WorkerProcess(db_url, 2, **FAST).wait_ready()
    workers.append(w)
    jobs = add_exec_jobs(service, 2, sleep=1.5)
    wait_until(lambda: scalar(db_url, "select count(*) from exec_log") == 2, 20, "both jobs start")
    assert w.terminate() == 0, w.log()
    assert all(service.get_job(j.id).succeeded for j in jobs)
    assert scalar(db_url, "select count(*) from exec_log where ended_at is null") == 0


# -- prefetch: claimed jobs waiting in memory -------------------------------------------------


def test_sigkilled_prefetching_worker_loses_no_job(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    """Its running job and the ones it held in memory are reaped and run elsewhere; each of
    those counts a crash attempt (the documented price of prefetch), none is lost."""
    victim = WorkerProcess(db_url, 1, **FAST, JQ_PREFETCH="5").wait_ready()
    workers.append(victim)
    jobs = add_exec_jobs(service, 6, sleep=0.5, max_retry_count=1)
    wait_until(lambda: scalar(db_url, "select count(*) from exec_log"), 20, "first job starts")
    held = scalar(
        db_url, "select count(*) from worker.job where started_at is not null and stopped_at is null"
    )
    assert held == 6  # one running, five waiting in the victim's memory
    victim.kill()
    workers.append(WorkerProcess(db_url, 3, **FAST).wait_ready())
    wait_until(lambda: all(service.get_job(j.id).stopped for j in jobs), 30, "all jobs complete")
    done = [service.get_job(j.id) for j in jobs]
    assert all(j.state is JobState.SUCCEEDED for j in done), done
    assert all(j.attempt == 2 and [e.type for e in j.errors] == ["WorkerLost"] for j in done)
    assert scalar(db_url, "select count(distinct job_id) from exec_log where ended_at is not null") == 6
    assert overlapping_runs(db_url) == 0


def test_sigkilled_worker_with_the_adaptive_prefetch_loses_no_job_and_costs_at_most_the_limit(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    """The default claim-ahead: short jobs make it claim ahead; a SIGKILL then costs a crash
    attempt for at most the running jobs plus AUTO_PREFETCH_LIMIT held ones; none is lost."""
    threads = 2
    victim = WorkerProcess(db_url, threads, **FAST, JQ_PREFETCH="auto").wait_ready()
    workers.append(victim)
    jobs = add_exec_jobs(service, 400, max_retry_count=1)
    wait_until(lambda: scalar(db_url, "select count(*) from exec_log") >= 100, 60, "100 jobs ran")
    victim.kill()
    workers.append(WorkerProcess(db_url, 3, **FAST).wait_ready())
    wait_until(lambda: unfinished(db_url) == 0, 60, "all jobs complete")
    done = [service.get_job(j.id) for j in jobs]
    assert all(j.state is JobState.SUCCEEDED for j in done), [j for j in done if not j.succeeded][:3]
    crashed = [j for j in done if [e.type for e in j.errors] == ["WorkerLost"]]
    assert len(crashed) <= threads + jobworker.AUTO_PREFETCH_LIMIT, len(crashed)
    assert scalar(db_url, "select count(distinct job_id) from exec_log where ended_at is not null") == 400
    assert overlapping_runs(db_url) == 0


def test_sigterm_gives_back_prefetched_jobs_uncounted(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    w = WorkerProcess(db_url, 1, **FAST, JQ_PREFETCH="5").wait_ready()
    workers.append(w)
    jobs = add_exec_jobs(service, 6, sleep=1.0)
    wait_until(lambda: scalar(db_url, "select count(*) from exec_log"), 20, "first job starts")
    assert w.terminate() == 0, w.log()
    states = [service.get_job(j.id) for j in jobs]
    ran = [j for j in states if j.succeeded]
    given_back = [j for j in states if not j.started]
    assert len(ran) == 1 and len(given_back) == 5, states
    assert all(j.attempt == 0 and j.claim_token is None and not j.errors for j in given_back)
    assert scalar(db_url, "select count(*) from exec_log") == 1
