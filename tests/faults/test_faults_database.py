"""The database misbehaves under running workers: restarts, an outage, cut connections,
read-only mode, a session holding an old snapshot.

Workers run without polling: after a fault only the library's own recovery (reconnect,
re-LISTEN, claim once after reconnecting) can bring them back to work.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from faultkit import (
    STEADY,
    STEADY_DEAD_FOR,
    TEST_APP,
    WORKER_APP,
    Accounting,
    Fleet,
    connect,
    exec_jobs,
    log_records,
    log_sources,
    one,
    prepare,
    report,
    runs_ended,
    summary,
    throughput,
    unfinished,
    wait_for,
    waiting,
)
from processes import ThrowawayPostgres, WorkerProcess
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from jobworker_pg import PostgresService
from jobworker_pg._listener import APPLICATION_NAME as LISTEN_APP

# Workers are back within this long after the server returns (the bound of the first suite:
# the old 10 s reconnect cap plus claim slack; the listener now retries every second).
MAX_RECONNECT_DELAY = 10.0

pytestmark = pytest.mark.faults

SEED = int(os.environ.get("JOBQUEUE_FAULTS_SEED", "20240607"))
#: The long outage, in seconds (the brief asks for 60; 25 keeps the suite within its budget).
OUTAGE_SECONDS = float(os.environ.get("JOBQUEUE_FAULTS_OUTAGE", "25"))
#: How long connections are cut every 200 ms (asked: 30 s).
CUT_SECONDS = float(os.environ.get("JOBQUEUE_FAULTS_CUT_SECONDS", "15"))
CUT_EVERY = 0.2
#: How long the database stays read-only.
READ_ONLY_SECONDS = 6.0
JOB_SECONDS = 0.02  # one run: long enough that runs are in flight when a fault strikes


def top_up(url: str, min_waiting: int) -> None:
    """Keep at least ``min_waiting`` jobs waiting, so the drain outlasts every phase."""
    now_waiting = waiting(url)
    if now_waiting < min_waiting:
        with PostgresService(url) as svc:
            svc.add_jobs(exec_jobs(min_waiting - now_waiting, JOB_SECONDS, max_retry_count=5))


def db_now(url: str) -> datetime:
    value = one(url, "select clock_timestamp()")
    assert isinstance(value, datetime)
    return value


def first_claim_after(url: str, since: datetime) -> float | None:
    """Seconds from ``since`` (database clock) to the first claim after it, if any yet."""
    value = one(
        url,
        "select extract(epoch from min(started_at) - %s)::float8 from worker.job where started_at > %s",
        (since, since),
    )
    return None if value is None else float(value)


def back_to_work(url: str, since: datetime, timeout: float) -> float:
    """Wait for the first claim after ``since``; its delay in seconds."""
    return float(
        wait_for(lambda: _or_none(lambda: first_claim_after(url, since)), timeout, "workers claim again", 0.1)
    )


def _or_none(fn: Callable[[], float | None]) -> float | None:
    """fn(), or None while the server is still coming up."""
    try:
        return fn()
    except psycopg.OperationalError:
        return None


def drained(url: str) -> bool:
    return bool(_or_none(lambda: float(unfinished(url) == 0)))


def workers_alive(fleet: Fleet, workers: list[WorkerProcess]) -> None:
    for w in workers:
        assert w.alive, f"worker {w.pid} died:\n{fleet.logs()}"


# -- 5: PostgreSQL restarts and an outage -----------------------------------------------------


@pytest.mark.timeout(300)
def test_postgres_restarts_and_an_outage_stop_no_worker_and_lose_no_job(
    throwaway: ThrowawayPostgres, fleet: Fleet
) -> None:
    """restart -m fast, stop -m immediate + start, then a long outage, all during one
    drain: workers survive, log at a bounded rate while the server is away, claim again
    by themselves, and every job ends succeeded with no overlapping runs."""
    url = throwaway.new_database()
    prepare(url)
    top_up(url, 1500)
    workers = fleet.start_many(url, 2, 4, **STEADY)
    wait_for(lambda: runs_ended(url) >= 200, 60, "drain under way")
    before = throughput(url, 3.0)
    figures: dict[str, Any] = {"throughput_before": round(before, 1)}

    faults_started = time.monotonic()
    ended_at_faults_start = runs_ended(url)

    def stop_immediate_and_start() -> None:
        throwaway.stop("immediate")
        throwaway.start()

    faults: list[tuple[str, Callable[[], None]]] = [
        ("restart_fast", lambda: throwaway.restart("fast")),
        ("stop_immediate_start", stop_immediate_and_start),
    ]
    for name, fault in faults:
        top_up(url, 800)
        t = time.monotonic()
        fault()
        down_seconds = time.monotonic() - t
        up = db_now(url)
        figures[f"{name}_server_seconds"] = round(down_seconds, 2)
        figures[f"{name}_back_to_work_seconds"] = round(back_to_work(url, up, 60), 2)
        figures[f"{name}_throughput_after"] = round(throughput(url, 2.0), 1)
    figures["throughput_during_restarts"] = round(
        (runs_ended(url) - ended_at_faults_start) / (time.monotonic() - faults_started), 1
    )

    top_up(url, 800)
    outage_start = time.monotonic()
    throwaway.stop("fast")
    time.sleep(OUTAGE_SECONDS)  # the scenario: the server is away this long
    throwaway.start()
    outage_end = time.monotonic()
    up = db_now(url)
    back = back_to_work(url, up, 60)
    per_worker = [w.lines_between(outage_start, outage_end) for w in workers]
    records = [log_records(lines) for lines in per_worker]
    figures.update(
        outage_seconds=round(outage_end - outage_start, 1),
        outage_back_to_work_seconds=round(back, 2),
        outage_log_records_per_worker=records,
        outage_log_lines_per_worker=[len(lines) for lines in per_worker],
        outage_log_records_per_minute=round(60 * max(records) / (outage_end - outage_start), 1),
        outage_log_sources_worker_1=log_sources(per_worker[0]),
    )
    figures["throughput_after"] = round(throughput(url, 3.0), 1)

    wait_for(lambda: drained(url), 120, "drain completes", 0.25)
    workers_alive(fleet, workers)
    acc = Accounting.load(url)
    acc.check(reaps_allowed=True)  # a claim whose commit answer was cut is reaped, never lost
    figures.update(acc.figures())
    report("postgres_restarts_and_outage", **figures)
    # Bounded: a few records a second at most while the server is away, whatever the load.
    # (A worker retries its heartbeat, claim, outcome and LISTEN connection with backoff.)
    # Back by themselves within the capped reconnect backoff (+ claim slack).
    back_times = [v for k, v in figures.items() if k.endswith("back_to_work_seconds")]
    assert max(back_times) < MAX_RECONNECT_DELAY + 5, figures
    for w, n in zip(workers, records, strict=True):
        assert n <= 2 * OUTAGE_SECONDS + 20, f"worker {w.pid} logged {n} records:\n{w.log()[-3000:]}"
    for w in workers:
        assert w.terminate() == 0, w.log()[-3000:]


# After an outage this long, psycopg_pool's next reconnect attempt is 20..33 s away (its backoff
# doubles from 1 s: attempts at 1, 3, 7, 15, 31 (27.9..34.1 with jitter), 63 (56.7..69.3) s).
UNLUCKY_OUTAGE_SECONDS = 36.0


@pytest.mark.timeout(180)
def test_worker_claims_within_the_capped_backoff_after_an_outage_of_any_length(
    throwaway: ThrowawayPostgres, fleet: Fleet
) -> None:
    """The guarantee: workers reconnect with capped backoff. After a 36 s outage a job added
    once the server is back must be claimed within the cap (10 s) plus claim slack."""
    url = throwaway.new_database()
    prepare(url)
    fleet.start(url, 1, **STEADY)
    throwaway.stop("fast")
    time.sleep(UNLUCKY_OUTAGE_SECONDS)  # the scenario: the server is away this long
    throwaway.start()
    with PostgresService(url) as svc:
        (job,) = svc.add_jobs(exec_jobs(1))
        added = time.monotonic()
        try:
            wait_for(
                lambda: svc.get_job(job.id).started_at, MAX_RECONNECT_DELAY + 5, "claimed after the outage"
            )
        finally:
            report(
                "outage_backoff",
                outage_seconds=UNLUCKY_OUTAGE_SECONDS,
                claimed=svc.get_job(job.id).started_at is not None,
                waited_seconds=round(time.monotonic() - added, 1),
                bound_seconds=MAX_RECONNECT_DELAY + 5,
            )


#: The outage of the pickup check of issue 18 (item 16).
PICKUP_OUTAGE_SECONDS = 30.0
#: A job added as soon as the server is back starts within this long (database clock).
PICKUP_AFTER_OUTAGE_SECONDS = 1.0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_job_added_right_after_a_30s_outage_starts_within_a_second(
    throwaway: ThrowawayPostgres, fleet: Fleet
) -> None:
    """Polling off: only the listener's reconnect (at most a second apart while the server is
    away) and the claim it triggers can pick the job up."""
    url = throwaway.new_database()
    prepare(url)
    worker = fleet.start(url, 1, **STEADY)
    throwaway.stop("fast")
    time.sleep(PICKUP_OUTAGE_SECONDS)  # the scenario: the server is away this long
    throwaway.start()
    with PostgresService(url) as svc:
        (job,) = svc.add_jobs(exec_jobs(1))
        wait_for(lambda: svc.get_job(job.id).started_at, 30, "claimed after the outage", 0.05)
        got = svc.get_job(job.id)
    assert got.started_at is not None and got.created_at is not None
    pickup = (got.started_at - got.created_at).total_seconds()
    report("pickup_after_outage", outage_seconds=PICKUP_OUTAGE_SECONDS, pickup_seconds=round(pickup, 2))
    assert pickup < PICKUP_AFTER_OUTAGE_SECONDS, f"picked up after {pickup:.2f} s:\n{worker.log()[-3000:]}"


# -- 6: connections cut under the workers ------------------------------------------------------


def worker_backends(conn: psycopg.Connection[Any]) -> list[tuple[int, bool]]:
    """(backend pid, is the LISTEN connection) of the library's connections in worker processes
    (their pools are tagged WORKER_APP; the listener names its own connection)."""
    return conn.execute(
        "select pid, application_name = %s from pg_stat_activity"
        " where datname = current_database() and application_name in (%s, %s)",
        (LISTEN_APP, WORKER_APP, LISTEN_APP),
    ).fetchall()


def pickup_seconds(url: str, n: int) -> list[float]:
    """Add ``n`` jobs one after another to an idle queue; each one's claim delay (database clock)."""
    delays = []
    with PostgresService(url) as svc:
        for _ in range(n):
            (job,) = svc.add_jobs(exec_jobs(1))
            wait_for(lambda: svc.get_job(job.id).started_at, 10, "probe job picked up", 0.02)  # noqa: B023  # called within this iteration
            got = svc.get_job(job.id)
            assert got.started_at is not None and got.created_at is not None
            delays.append((got.started_at - got.created_at).total_seconds())
    return delays


@pytest.mark.timeout(300)
def test_connections_cut_every_200ms_lose_no_job_and_pickup_resumes(db_url: str, fleet: Fleet) -> None:
    """pg_terminate_backend on a random library connection of the workers every 200 ms (every
    fifth time a LISTEN connection): no job lost, no overlap, and afterwards an idle worker still
    picks a new job up at once (LISTEN re-established, no polling)."""
    rng = random.Random(SEED)
    prepare(db_url)
    top_up(db_url, 1500)
    workers = fleet.start_many(db_url, 2, 4, **STEADY)
    wait_for(lambda: runs_ended(db_url) >= 100, 60, "drain under way")
    figures: dict[str, Any] = {"throughput_before": round(throughput(db_url, 2.0), 1)}

    cuts = listen_cuts = 0
    with connect(db_url) as conn:
        ended_before, started = runs_ended(db_url), time.monotonic()
        while time.monotonic() - started < CUT_SECONDS:
            if cuts % 5 == 0:
                top_up(db_url, 600)
            backends = worker_backends(conn)
            listening = [b for b in backends if b[1]]
            # Every fifth cut goes to a LISTEN connection, the others to any library connection.
            pool = listening if cuts % 5 == 0 and listening else backends
            if pool:
                pid, is_listen = rng.choice(pool)
                if conn.execute("select pg_terminate_backend(%s)", (pid,)).fetchone() == (True,):
                    cuts += 1
                    listen_cuts += is_listen
            time.sleep(CUT_EVERY)
        during = (runs_ended(db_url) - ended_before) / (time.monotonic() - started)
    figures.update(
        cut_seconds=CUT_SECONDS,
        connections_cut=cuts,
        listen_connections_cut=listen_cuts,
        throughput_during=round(during, 1),
        throughput_after=round(throughput(db_url, 2.0), 1),
    )
    # Claims whose commit answer was cut come back after dead_for: allow for it.
    wait_for(lambda: unfinished(db_url) == 0, 60 + STEADY_DEAD_FOR, "drain completes", 0.25)
    figures["pickup_after_cuts_seconds"] = summary(pickup_seconds(db_url, 5))
    workers_alive(fleet, workers)
    acc = Accounting.load(db_url)
    acc.check(reaps_allowed=True)
    figures.update(acc.figures())
    report("connections_cut", **figures)
    # Woken by NOTIFY, not by a poll: LISTEN was re-established after every cut.
    assert figures["pickup_after_cuts_seconds"]["max"] < 1.0, figures
    assert "LISTEN/NOTIFY does not work" not in fleet.full_log()
    for w in workers:
        assert w.terminate() == 0, w.log()[-3000:]


# -- 7: the database turns read-only and back --------------------------------------------------


def set_read_only(url: str, on: bool, *, cut_sessions: bool) -> int:
    """Switch the database's default_transaction_read_only; with ``cut_sessions`` terminate
    every other session so that it reconnects under the new default. Returns sessions cut."""
    dbname = conninfo_to_dict(url)["dbname"]
    with connect(url, options="-c default_transaction_read_only=off") as conn:
        setting = "set default_transaction_read_only = on" if on else "reset default_transaction_read_only"
        conn.execute(sql.SQL("alter database {} " + setting).format(sql.Identifier(str(dbname))))
        if not cut_sessions:
            return 0
        row = conn.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid() and application_name <> %s",
            (TEST_APP,),
        ).fetchone()
        return int(row[0]) if row else 0


def seconds_since_last_claim(url: str) -> float:
    return float(
        one(
            url,
            "select coalesce(extract(epoch from clock_timestamp() - max(started_at)), 1e9) from worker.job",
        )
    )


@pytest.mark.timeout(300)
def test_read_only_database_and_back_workers_recover_without_restart(db_url: str, fleet: Fleet) -> None:
    """The database turns read-only (sessions cut so they see it) for a while, then writable
    again: the same worker processes claim again by themselves and no job is lost."""
    prepare(db_url)
    top_up(db_url, 1500)
    workers = fleet.start_many(db_url, 2, 4, **STEADY)
    pids = [w.pid for w in workers]
    wait_for(lambda: runs_ended(db_url) >= 100, 60, "drain under way")
    figures: dict[str, Any] = {"throughput_before": round(throughput(db_url, 2.0), 1)}

    ro_start = time.monotonic()
    figures["sessions_cut_going_read_only"] = set_read_only(db_url, True, cut_sessions=True)
    wait_for(lambda: seconds_since_last_claim(db_url) > 1.0, 15, "claims stop while read-only", 0.1)
    figures["claims_stopped_after_seconds"] = round(time.monotonic() - ro_start - 1.0, 2)
    # The scenario: read-only this long.
    time.sleep(max(0.0, READ_ONLY_SECONDS - (time.monotonic() - ro_start)))
    ro_end = time.monotonic()
    lines = [w.lines_between(ro_start, ro_end) for w in workers]
    figures.update(
        read_only_seconds=round(ro_end - ro_start, 1),
        read_only_log_records_per_worker=[log_records(x) for x in lines],
        read_only_log_sources_worker_1=log_sources(lines[0]),
    )
    workers_alive(fleet, workers)

    # Writable again. Sessions opened while read-only keep that default until they reconnect,
    # so they are cut again (without that, see the xfail test below).
    figures["sessions_cut_going_writable"] = set_read_only(db_url, False, cut_sessions=True)
    writable = db_now(db_url)
    figures["back_to_work_seconds"] = round(back_to_work(db_url, writable, 30), 2)
    figures["throughput_after"] = round(throughput(db_url, 2.0), 1)

    wait_for(lambda: unfinished(db_url) == 0, 60 + STEADY_DEAD_FOR, "drain completes", 0.25)
    workers_alive(fleet, workers)
    assert [w.pid for w in workers] == pids
    acc = Accounting.load(db_url)
    acc.check(reaps_allowed=True)
    figures.update(acc.figures())
    report("read_only", **figures)
    for w in workers:
        assert w.terminate() == 0, w.log()[-3000:]


@pytest.mark.timeout(120)
def test_workers_recover_when_the_database_turns_writable_again_without_cutting_sessions(
    db_url: str, fleet: Fleet
) -> None:
    """A read-only database made writable again with ALTER DATABASE alone (as after a
    failover, or an operator's fix): sessions opened while it was read-only keep that default,
    so a worker must drop a connection that answers "read-only transaction" and open a new one."""
    prepare(db_url)
    workers = fleet.start_many(db_url, 1, 2, **STEADY)
    set_read_only(db_url, True, cut_sessions=True)
    with connect(db_url, options="-c default_transaction_read_only=off") as conn:
        conn.execute(
            "insert into worker.job (id, type, payload, origin)"
            " values (gen_random_uuid(), 'exec', '{}', 'faults')"
        )
    wait_for(lambda: "ReadOnlySqlTransaction" in fleet.all[0].log(), 15, "the worker hits read-only", 0.1)
    set_read_only(db_url, False, cut_sessions=False)
    writable = db_now(db_url)
    back_to_work(db_url, writable, 10)  # a claim after the database became writable
    workers_alive(fleet, workers)


# -- 11: a session holding an old snapshot for the whole drain ---------------------------------


SNAPSHOT_JOBS = 2000


def claim_query_ms(url: str, n: int) -> list[float]:
    """Milliseconds of a worker's claim call (WorkerDatabase.claim_jobs) on the drained queue,
    where it claims nothing: the cost of walking past what the drain left behind."""
    times = []
    with PostgresService(url) as svc:
        svc.claim_jobs(["exec"], 4)  # open the pool's connection first
        for _ in range(n):
            t = time.perf_counter()
            assert svc.claim_jobs(["exec"], 4) == []
            times.append(1000 * (time.perf_counter() - t))
    return times


def drain_and_measure(url: str, fleet: Fleet, holder: psycopg.Connection[Any] | None) -> dict[str, Any]:
    """Drain SNAPSHOT_JOBS jobs with 2 workers x 4 threads; the figures of that drain."""
    prepare(url)
    workers = fleet.start_many(url, 2, 4, **STEADY)
    if holder is not None:
        # The snapshot: REPEATABLE READ, taken by the first read, held until the end.
        assert holder.execute("select count(*) from worker.job").fetchone() == (0,)
    with PostgresService(url) as svc:
        start = time.monotonic()
        svc.add_jobs(exec_jobs(SNAPSHOT_JOBS))
    wait_for(lambda: unfinished(url) == 0, 120, "drain completes", 0.1)
    drain = time.monotonic() - start
    figures: dict[str, Any] = {
        "drain_seconds": round(drain, 2),
        "jobs_per_second": round(SNAPSHOT_JOBS / drain, 1),
        "claim_call_ms": summary(claim_query_ms(url, 30)),
        "pickup_seconds": summary(pickup_seconds(url, 10)),
        "dead_tuples": one(
            url, "select n_dead_tup from pg_stat_user_tables where relid = 'worker.job'::regclass"
        ),
    }
    if holder is not None:
        # Still the old snapshot: it sees none of the jobs, and it holds the xmin horizon back.
        assert holder.execute("select count(*) from worker.job").fetchone() == (0,)
        figures["holder_xmin_held"] = one(
            url,
            "select backend_xmin is not null from pg_stat_activity where pid = %s",
            (holder.info.backend_pid,),
        )
    acc = Accounting.load(url)
    assert len(acc.jobs) == SNAPSHOT_JOBS + 10
    acc.check(reaps_allowed=False)
    assert acc.figures()["extra_runs"] == 0
    for w in workers:
        assert w.terminate() == 0, w.log()[-3000:]
    return figures


@pytest.mark.timeout(300)
def test_an_old_snapshot_held_through_a_drain_keeps_it_correct(
    db_url: str, pg_server: Any, template_db: str, fleet: Fleet
) -> None:
    """A REPEATABLE READ transaction that has read the job table stays open for a whole
    drain (vacuum can then remove nothing): every job still runs exactly once. Reported:
    drain time, claim query time and pickup latency, with and without it."""
    name = f"jobqueue_faults_{uuid4().hex[:10]}"
    baseline_url = pg_server.create_database(name, template=template_db)
    try:
        without = drain_and_measure(baseline_url, fleet, None)
    finally:
        pg_server.drop_database(name)
    with psycopg.connect(db_url, application_name=TEST_APP) as holder:
        holder.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with_snapshot = drain_and_measure(db_url, fleet, holder)
        holder.rollback()
    report(
        "old_snapshot",
        jobs=SNAPSHOT_JOBS,
        without_snapshot=without,
        with_snapshot=with_snapshot,
        drain_slowdown=round(with_snapshot["drain_seconds"] / without["drain_seconds"], 2),
    )
    assert with_snapshot["holder_xmin_held"] is True
