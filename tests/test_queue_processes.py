"""Queue rules across worker processes: concurrency, per-key limits, rate limits, weights, pause, SIGKILL.

Each test runs several ``tests/worker_app.py`` processes; handlers log every run in
``exec_log`` (start and end, by the database clock), and the assertions count overlaps
there. A logged run lies inside the job's claimed interval in the database, so an
overlap count from the log never exceeds what the database held running.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from helpers import wait_for as wait_until
from processes import WorkerProcess, scalar

import jobqueue
from jobqueue import RateLimit
from jobworker_pg import PostgresService

pytestmark = pytest.mark.slow

STEADY = {"JQ_HEARTBEAT": "0.5", "JQ_DEAD_FOR": "10", "JQ_REAPER": "0.5", "JQ_TYPES": "exec"}
FAST = {"JQ_HEARTBEAT": "0.25", "JQ_DEAD_FOR": "1.5", "JQ_REAPER": "0.25", "JQ_TYPES": "exec"}


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        if w.alive:
            w.kill()


def start(workers: list[WorkerProcess], url: str, n: int, threads: int, **env: str) -> list[WorkerProcess]:
    new = [WorkerProcess(url, threads, **env) for _ in range(n)]
    workers.extend(new)
    for w in new:
        w.wait_ready()
    return new


def add_jobs(service: PostgresService, n: int, sleep: float = 0.0, **kw: Any) -> list[jobqueue.Job]:
    return service.add_jobs(
        [jobqueue.new_job("exec", "test", {"i": i, "sleep": sleep}, **kw) for i in range(n)]
    )


def unfinished(url: str, queue: str | None = None) -> int:
    return int(
        scalar(
            url,
            "select count(*) from worker.job"
            " where stopped_at is null and (%(q)s::text is null or queue = %(q)s)",
            {"q": queue},
        )
    )


def max_running(url: str, queue: str, since: str = "-infinity") -> int:
    """The most runs of ``queue`` in progress at one moment, from exec_log (a run without an
    end counts until the end of time; ends sort before starts at the same instant)."""
    return int(
        scalar(
            url,
            """
            with runs as (
                select l.started_at, coalesce(l.ended_at, 'infinity') as ended_at
                from exec_log l join worker.job j on j.id = l.job_id
                where j.queue = %(queue)s
            ), events as (
                select started_at as at, 1 as d from runs
                union all
                select ended_at, -1 from runs
            ), levels as (
                select at, sum(d) over (order by at, d rows unbounded preceding) as n from events
            )
            select coalesce(max(n), 0) from levels where at >= %(since)s::timestamptz
            """,
            {"queue": queue, "since": since},
        )
    )


def db_now(url: str) -> Any:
    return scalar(url, "select clock_timestamp()")


def test_queue_concurrency_holds_across_four_processes_and_the_queue_drains(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    service.configure_queue("limited", concurrency=3)
    start(workers, db_url, 4, 4, **STEADY, JQ_QUEUES="limited")
    add_jobs(service, 60, sleep=0.1, queue="limited")
    wait_until(lambda: unfinished(db_url) == 0, 180, "the limited queue drained")
    assert scalar(db_url, "select count(distinct job_id) from exec_log") == 60
    assert max_running(db_url, "limited") == 3  # reached, never passed
    assert scalar(db_url, "select count(distinct pid) from exec_log") > 1


def test_a_per_key_limit_of_one_keeps_each_keys_runs_apart_and_every_key_progresses(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    service.configure_queue("tenants", per_key_concurrency=1)
    start(workers, db_url, 4, 4, **STEADY, JQ_QUEUES="tenants")
    service.add_jobs(
        [
            jobqueue.new_job("exec", "test", {"sleep": 0.05}, queue="tenants", concurrency_key=f"k{i % 20}")
            for i in range(200)
        ]
    )
    wait_until(lambda: unfinished(db_url) == 0, 180, "every key's jobs done")
    overlaps = scalar(
        db_url,
        """
        select count(*)
        from exec_log a join worker.job ja on ja.id = a.job_id,
             exec_log b join worker.job jb on jb.id = b.job_id
        where ja.concurrency_key = jb.concurrency_key and (a.job_id, a.attempt) < (b.job_id, b.attempt)
          and a.started_at < b.ended_at and b.started_at < a.ended_at
        """,
    )
    assert overlaps == 0
    done = scalar(
        db_url, "select count(distinct concurrency_key) from worker.job where stopped_at is not null"
    )
    assert done == 20
    assert max_running(db_url, "tenants") > 1  # keys ran side by side


def test_a_rate_limit_of_50_per_second_holds_in_every_window_over_ten_seconds(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    service.configure_queue("api", rate_limit=RateLimit(50, per=timedelta(seconds=1)))
    start(workers, db_url, 4, 4, **STEADY, JQ_QUEUES="api")
    add_jobs(service, 800, queue="api")
    first = "(select min(started_at) from worker.job where queue = 'api')"
    wait_until(
        lambda: scalar(db_url, f"select now() > {first} + interval '10.5 s'") is True,
        120,
        "ten seconds of starts",
    )
    # Database timestamps of the starts: started_at is set by the claim, from the database clock.
    in_ten_seconds = scalar(
        db_url,
        f"select count(*) from worker.job where queue = 'api' and started_at < {first} + interval '10 s'",
    )
    assert 450 <= in_ten_seconds <= 550
    busiest_window = scalar(
        db_url,
        """
        select max((select count(*) from worker.job b
                    where b.queue = 'api' and b.started_at >= a.started_at
                      and b.started_at < a.started_at + interval '1 s'))
        from worker.job a where a.queue = 'api' and a.started_at is not null
        """,
    )
    assert busiest_window <= 50


def test_weights_split_claims_ten_to_one_and_an_empty_queue_lends_its_threads(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    add_jobs(service, 1500, sleep=0.01, queue="critical")
    add_jobs(service, 1500, sleep=0.01, queue="default")
    start(workers, db_url, 2, 4, **STEADY, JQ_QUEUES="critical:10,default:1")
    started = "select count(*) from worker.job where started_at is not null or stopped_at is not null"
    wait_until(lambda: scalar(db_url, started) >= 770, 180, "770 jobs started")
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select queue, count(*) from worker.job where started_at is not null or stopped_at is not null"
            " group by queue"
        ).fetchall()
    by_queue: dict[str, int] = dict(rows)
    ratio = by_queue["critical"] / by_queue["default"]
    assert 8.0 <= ratio <= 12.0, by_queue
    # Once critical is empty (drained, nothing added), default gets every thread of both processes.
    wait_until(lambda: unfinished(db_url, "critical") == 0, 180, "critical drained")
    since = db_now(db_url)
    add_jobs(service, 40, sleep=0.5, queue="default2")  # another queue: not served
    slow = add_jobs(service, 24, sleep=0.5, priority=10)  # ahead of the rest of default
    wait_until(lambda: all(service.get_job(j.id).stopped for j in slow), 180, "the slow jobs done")
    assert max_running(db_url, "default", str(since)) == 8
    assert unfinished(db_url, "default2") == 40


def test_pause_stops_claims_in_every_process_within_a_second_and_resume_restarts_them(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    start(workers, db_url, 4, 2, **STEADY, JQ_QUEUES="bulk")
    add_jobs(service, 3000, sleep=0.02, queue="bulk")
    started = "select count(*) from worker.job where queue = 'bulk' and started_at is not null"
    wait_until(lambda: scalar(db_url, started) >= 50, 120, "claims under way")
    paused_at = db_now(db_url)  # before the pause commits: stricter than after
    service.configure_queue("bulk", paused=True)
    wait_until(
        lambda: scalar(db_url, "select clock_timestamp() > %s + interval '3 s'", (paused_at,)) is True,
        60,
        "three seconds after the pause",
    )
    late = scalar(
        db_url,
        "select count(*) from worker.job where queue = 'bulk' and started_at > %s + interval '1 s'",
        (paused_at,),
    )
    assert late == 0
    waiting = unfinished(db_url, "bulk")
    assert waiting > 0
    service.configure_queue("bulk", paused=False)
    resumed_at = db_now(db_url)
    wait_until(
        lambda: (
            scalar(
                db_url,
                "select count(distinct l.pid) from exec_log l where l.started_at > %s",
                (resumed_at,),
            )
            >= 2
        ),
        60,
        "claims again after resume",
    )


def test_a_sigkilled_process_gives_its_limited_places_back_through_the_reaper(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    service.configure_queue("limited", concurrency=2)
    victim, *_others = start(workers, db_url, 3, 2, **FAST, JQ_QUEUES="limited")
    add_jobs(service, 16, sleep=0.5, queue="limited", max_retry_count=3)
    running_on_victim = "select count(*) from exec_log where pid = %s and ended_at is null"
    wait_until(lambda: scalar(db_url, running_on_victim, (victim.pid,)) > 0, 60, "the victim runs a job")
    victim.kill()
    killed_at = db_now(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:  # its runs ended with the process
        conn.execute(
            "update exec_log set ended_at = %s where pid = %s and ended_at is null", (killed_at, victim.pid)
        )
    wait_until(lambda: unfinished(db_url) == 0, 180, "the queue drained after the kill")
    assert max_running(db_url, "limited") == 2
    assert max_running(db_url, "limited", str(killed_at)) == 2  # the places came back
    reaped = scalar(db_url, "select count(*) from worker.job where attempt > 1")
    assert reaped >= 1
    assert (
        scalar(db_url, "select count(*) from worker.job where stopped_at is not null and error_msg is null")
        == 16
    )
