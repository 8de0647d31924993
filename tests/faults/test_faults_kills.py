"""Worker processes killed, frozen, poisoned and stopped while jobs run.

Every test checks the same invariants over ``exec_log`` (see faultkit.Accounting):
no job lost, one final state each, no two attempts of a job running at the same
time, runs per job at most 1 + the kills that hit it, and no live worker's job
ever taken for dead.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter

import pytest
from faultkit import (
    STEADY,
    STEADY_DEAD_FOR,
    Accounting,
    Fleet,
    all_rows,
    connect,
    exec_jobs,
    one,
    prepare,
    report,
    runs_started,
    summary,
    unfinished,
    wait_for,
    waiting,
)
from helpers import Notifications

import jobqueue
from jobqueue import JobState
from jobworker import BUNDLE_JOB_PREFIX
from jobworker_pg import PostgresService

pytestmark = pytest.mark.faults

SEED = int(os.environ.get("JOBQUEUE_FAULTS_SEED", "20240607"))

# The kill storm: SIGKILL + restart cycles over 4 workers x 4 threads while jobs drain. The brief
# asks for 100 cycles over 5,000 jobs (about 150 s here: a restart costs 0.7 s of CPU on a 2-core
# box); CI runs half of that, at the same ratio of jobs to kills. The environment can restore it.
STORM_WORKERS, STORM_THREADS = 4, 4
STORM_CYCLES = int(os.environ.get("JOBQUEUE_FAULTS_KILL_CYCLES", "50"))
STORM_JOBS = int(os.environ.get("JOBQUEUE_FAULTS_KILL_JOBS", str(50 * STORM_CYCLES)))
STORM_MEAN_JOB_SECONDS = 0.3  # runs last 0..0.6 s: the drain outlasts the storm
STORM_MAX_RETRIES = 10


@pytest.mark.timeout(300)
def test_kill_storm_loses_no_job_and_runs_no_attempt_twice(
    service: PostgresService, db_url: str, fleet: Fleet
) -> None:
    """Cycles of SIGKILL to a random one of 4 workers, each replaced at once, while jobs drain
    (topped up so that every kill hits a running drain): every job ends succeeded, no two
    attempts of a job overlap, and a job runs at most once more than the kills that hit it."""
    rng = random.Random(SEED)

    def duration(_: int) -> float:
        return round(rng.uniform(0, 2 * STORM_MEAN_JOB_SECONDS), 3)

    def jobs(n: int) -> list[jobqueue.Job]:
        return exec_jobs(n, duration, max_retry_count=STORM_MAX_RETRIES)

    prepare(db_url)
    workers = fleet.start_many(db_url, STORM_WORKERS, STORM_THREADS, **STEADY)
    added = len(service.add_jobs(jobs(STORM_JOBS)))
    started = time.monotonic()
    cycle_seconds = []
    for _ in range(STORM_CYCLES):
        cycle_start = time.monotonic()
        time.sleep(rng.uniform(0, 0.4))  # let the survivors claim, run and save in between
        if waiting(db_url) < 100:  # a slow machine: keep the drain going through the storm
            added += len(service.add_jobs(jobs(200)))
        slot = rng.randrange(len(workers))
        fleet.kill(db_url, workers[slot])
        workers[slot] = fleet.start(db_url, STORM_THREADS, **STEADY)
        cycle_seconds.append(time.monotonic() - cycle_start)
    storm_seconds = time.monotonic() - started
    left_after_storm = unfinished(db_url)
    # Jobs the last kills left running come back after dead_for; the rest drains at full speed.
    wait_for(lambda: unfinished(db_url) == 0, 120 + STEADY_DEAD_FOR, "drain after the storm", 0.25)
    drain_seconds = time.monotonic() - started
    for w in workers:
        assert w.alive, fleet.logs()

    acc = Accounting.load(db_url)
    assert len(acc.jobs) == added
    acc.check(reaps_allowed=True)
    assert all(j.attempt == 1 + len(j.lost_attempts) for j in acc.jobs.values()), (
        "every attempt but the last was ended by a kill"
    )
    figures = acc.figures()
    cut = Counter(r.pid for r in acc.runs if r.ended_at is None)
    report(
        "kill_storm",
        seed=SEED,
        workers=STORM_WORKERS,
        threads=STORM_THREADS,
        cycles=STORM_CYCLES,
        dead_for=STEADY_DEAD_FOR,
        storm_seconds=round(storm_seconds, 1),
        cycle_seconds=summary(cycle_seconds),
        unfinished_after_storm=left_after_storm,
        drain_seconds=round(drain_seconds, 1),
        runs_cut_per_kill=summary([cut.get(pid, 0) for pid in acc.kills]),
        extra_runs_per_kill=round(figures["extra_runs"] / STORM_CYCLES, 2),
        jobs_hit_per_kill=round(figures["jobs_hit_by_a_kill"] / STORM_CYCLES, 2),
        **figures,
    )


# -- 2: a worker SIGKILLed and never restarted -------------------------------------------------

# Recovery is what this scenario measures, so dead_for is short (6 heartbeats).
RECOVERY = {"JQ_HEARTBEAT": "0.5", "JQ_DEAD_FOR": "3", "JQ_REAPER": "0.5"}
RECOVERY_HEARTBEAT, RECOVERY_DEAD_FOR, RECOVERY_REAPER = 0.5, 3.0, 0.5
CLAIM_SLACK = 1.5  # reap -> NOTIFY -> claim -> handler start, on a loaded 2-core machine


@pytest.mark.timeout(120)
def test_sigkilled_workers_jobs_run_on_a_live_worker_within_dead_for_plus_one_reaper_interval(
    service: PostgresService, db_url: str, fleet: Fleet
) -> None:
    """A worker running 4 jobs is SIGKILLed and never restarted: a live worker runs each of
    them again no sooner than dead_for minus a heartbeat, and within dead_for + one reaper
    interval (+ claim slack) of the kill."""
    prepare(db_url)
    victim = fleet.start(db_url, 4, **RECOVERY)
    jobs = service.add_jobs(
        [
            jobqueue.new_job("exec", "faults", {"sleep": 2.0, "stamp": True}, max_retry_count=2)
            for _ in range(4)
        ]
    )
    wait_for(
        lambda: one(db_url, "select count(*) from exec_log where pid = %s", (victim.pid,)) == 4,
        30,
        "the victim runs all 4 jobs",
    )
    survivor = fleet.start(db_url, 4, **RECOVERY)
    fleet.kill(db_url, victim)
    wait_for(lambda: all(service.get_job(j.id).stopped for j in jobs), 30, "killed jobs complete")

    rows = [
        one(
            db_url,
            "select array[extract(epoch from e.started_at - k.killed_at),"
            "             extract(epoch from j.stopped_at - k.killed_at)]::float8[]"
            " from exec_log e, fault_kills k, worker.job j"
            " where e.job_id = %s and e.attempt = 2 and k.pid = %s and j.id = e.job_id",
            (j.id, victim.pid),
        )
        for j in jobs
    ]
    rerun = [r[0] for r in rows]
    finished = [r[1] for r in rows]
    for j in jobs:
        done = service.get_job(j.id)
        assert done.state is JobState.SUCCEEDED, done
        assert done.result == {"pid": survivor.pid, "attempt": 2}
        assert [(e.attempt, e.type) for e in done.errors] == [(1, "WorkerLost")]
    report(
        "sigkill_recovery",
        heartbeat=RECOVERY_HEARTBEAT,
        dead_for=RECOVERY_DEAD_FOR,
        reaper_interval=RECOVERY_REAPER,
        jobs=len(jobs),
        rerun_after_kill_seconds=summary(rerun),
        finished_after_kill_seconds=summary(finished),
        job_seconds=2.0,
        bound_seconds=RECOVERY_DEAD_FOR + RECOVERY_REAPER + CLAIM_SLACK,
    )
    assert min(rerun) > RECOVERY_DEAD_FOR - RECOVERY_HEARTBEAT - 0.5, rerun  # never reclaimed early
    assert max(rerun) < RECOVERY_DEAD_FOR + RECOVERY_REAPER + CLAIM_SLACK, rerun
    acc = Accounting.load(db_url)
    acc.check(reaps_allowed=True)


# -- 3: a handler that kills its worker (poison pill) -------------------------------------------

POISON = {"JQ_HEARTBEAT": "0.3", "JQ_DEAD_FOR": "2", "JQ_REAPER": "0.3"}
POISON_RETRIES = 2


@pytest.mark.timeout(120)
def test_poison_pill_kills_exactly_one_worker_per_attempt_then_fails(
    service: PostgresService, db_url: str, fleet: Fleet
) -> None:
    """A job whose handler calls os._exit(1), with 2 retries, under a supervisor that restarts
    its worker whenever it dies: exactly 3 workers die, one per attempt, then the job ends
    failed with "worker lost" errors for attempts 1, 2, 3; the jobs that shared its worker
    still succeed."""
    prepare(db_url)
    pill = service.add_job(jobqueue.new_job("exit", "faults", None, max_retry_count=POISON_RETRIES))
    healthy = service.add_jobs(exec_jobs(20, 0.05, max_retry_count=POISON_RETRIES + 1))
    started = time.monotonic()
    deaths: list[int] = []
    worker = fleet.start(db_url, 2, **POISON)
    while not service.get_job(pill.id).stopped:
        assert time.monotonic() - started < 90, f"poison pill still not failed after {deaths=}"
        if not worker.alive:
            assert worker.proc.returncode == 1, worker.log()
            fleet.record_death(db_url, worker)
            deaths.append(worker.pid)
            worker = fleet.start(db_url, 2, **POISON)  # the supervisor restarts it
        time.sleep(0.1)
    wait_for(lambda: all(service.get_job(j.id).stopped for j in healthy), 30, "healthy jobs finish")
    assert worker.alive, worker.log()

    failed = service.get_job(pill.id)
    assert failed.state is JobState.FAILED
    assert failed.attempt == POISON_RETRIES + 1
    assert [(e.attempt, e.type) for e in failed.errors] == [
        (1, "WorkerLost"),
        (2, "WorkerLost"),
        (3, "WorkerLost"),
    ]
    assert failed.error_msg is not None and failed.error_msg.startswith("worker lost")
    assert len(deaths) == POISON_RETRIES + 1, deaths
    acc = Accounting.load(db_url)
    acc.check(reaps_allowed=True)
    report(
        "poison_pill",
        max_retry_count=POISON_RETRIES,
        workers_died=len(deaths),
        attempts=failed.attempt,
        errors=[e.message for e in failed.errors],
        seconds_to_failed=round(time.monotonic() - started, 1),
        healthy_jobs=len(healthy),
        **{k: v for k, v in acc.figures().items() if k != "jobs"},
    )


# -- 4: a worker frozen past dead_for, then thawed ----------------------------------------------

PAUSE = {"JQ_HEARTBEAT": "0.4", "JQ_DEAD_FOR": "2", "JQ_REAPER": "0.4"}
BUNDLE_TYPE = "faults-bundle"
BUNDLE_LOG_DDL = """
create table bundle_log (bundle_id uuid, old_stopped int, new_stopped int,
                         at timestamptz not null default clock_timestamp());
create function log_bundle_counter() returns trigger language plpgsql as $$
begin
    insert into bundle_log (bundle_id, old_stopped, new_stopped)
    values (new.id, old.num_jobs_stopped, new.num_jobs_stopped);
    return null;
end $$;
create trigger bundle_counter_logged after update on worker.job_bundle for each row
    when (old.num_jobs_stopped is distinct from new.num_jobs_stopped)
    execute function log_bundle_counter();
"""


LATE_WRITE_MESSAGES = (
    "was reclaimed or reset elsewhere",
    "discarding the late",
    "not saved: its claim was taken over",
)


def late_write_messages(worker_log: str) -> dict[str, int]:
    """How often the thawed worker said each of the things it says about a lost claim."""
    return {m: sum(m in line for line in worker_log.splitlines()) for m in LATE_WRITE_MESSAGES}


def rejected_late(worker_log: str, job_id: object) -> bool:
    """The paused worker logged that its late outcome of ``job_id`` was not applied."""
    return any(
        str(job_id) in line and ("discarding the late" in line or "not saved" in line)
        for line in worker_log.splitlines()
    )


@pytest.mark.timeout(120)
def test_worker_frozen_past_dead_for_cannot_overwrite_the_newer_attempt_or_count_its_bundle_twice(
    service: PostgresService, db_url: str, fleet: Fleet
) -> None:
    """A worker running two bundle jobs is frozen (SIGSTOP) past dead_for; a live worker reaps
    and reruns both. The frozen one is thawed (SIGCONT) when one job has finished on the live
    worker and while the other still runs there: both late outcomes are rejected, each job
    keeps the live worker's result, the bundle counter moves once per job and the bundle's
    completion job and notification happen once."""
    prepare(db_url)
    with connect(db_url) as conn:
        conn.execute(BUNDLE_LOG_DDL)
        conn.execute("insert into worker.bundle_handler (bundle_type) values (%s)", (BUNDLE_TYPE,))
    notifications = Notifications(db_url, ("job_bundle_stopped",))
    frozen = fleet.start(db_url, 2, **PAUSE)
    bundle = service.add_job_bundle(
        jobqueue.new_job_bundle(
            BUNDLE_TYPE,
            "faults",
            [
                jobqueue.JobDesc(type="exec", payload={"sleep": 3.0, "stamp": True}, max_retry_count=2),
                jobqueue.JobDesc(type="exec", payload={"sleep": 8.0, "stamp": True}, max_retry_count=2),
            ],
        )
    )
    short, long = bundle.jobs
    wait_for(
        lambda: one(db_url, "select count(*) from exec_log where pid = %s", (frozen.pid,)) == 2,
        30,
        "both jobs run on the worker to be frozen",
    )
    frozen.pause()
    paused_at = time.monotonic()
    live = fleet.start(db_url, 2, **PAUSE)
    wait_for(lambda: service.get_job(short.id).stopped, 30, "the short job finishes on the live worker")
    assert not service.get_job(long.id).stopped, "the long job must still run on the live worker"
    frozen.resume()
    frozen_seconds = time.monotonic() - paused_at
    wait_for(
        lambda: rejected_late(frozen.log(), short.id) and rejected_late(frozen.log(), long.id),
        30,
        "the thawed worker's late outcomes are turned down",
        0.1,
    )
    wait_for(lambda: service.get_job_bundle(bundle.id).stopped, 30, "the bundle completes")

    for job in (short, long):
        got = service.get_job(job.id)
        assert got.state is JobState.SUCCEEDED, got
        assert got.result == {"pid": live.pid, "attempt": 2}, got.result
        assert got.attempt == 2
        assert [(e.attempt, e.type) for e in got.errors] == [(1, "WorkerLost")]
    counter = all_rows(db_url, "select old_stopped, new_stopped from bundle_log order by at")
    assert counter == [(0, 1), (1, 2)], counter
    completion_jobs = one(
        db_url, "select count(*) from worker.job where type = %s", (BUNDLE_JOB_PREFIX + BUNDLE_TYPE,)
    )
    assert completion_jobs == 1
    bundle_events = [p for _, p in notifications.collect(quiet=0.5) if p["id"] == str(bundle.id)]
    notifications.close()
    assert len(bundle_events) == 1, bundle_events
    # The thawed worker carries on: it exits cleanly, its run of each job does end (late).
    assert frozen.alive and frozen.terminate() == 0, frozen.log()
    late_runs = all_rows(
        db_url, "select count(*) from exec_log where pid = %s and ended_at is not null", (frozen.pid,)
    )
    assert late_runs == [(2,)]
    report(
        "sigstop_late_writes",
        dead_for=2.0,
        frozen_seconds=round(frozen_seconds, 1),
        late_outcomes_applied=0,
        final_results=[service.get_job(j.id).result for j in (short, long)],
        bundle_counter_moves=counter,
        bundle_completion_jobs=completion_jobs,
        bundle_stopped_notifications=len(bundle_events),
        thawed_worker_said=late_write_messages(frozen.log()),
    )


# -- 8: SIGTERM with jobs in flight -------------------------------------------------------------


@pytest.mark.timeout(120)
def test_sigterm_mid_drain_finishes_claimed_jobs_and_leaves_no_job_running(
    service: PostgresService, db_url: str, fleet: Fleet
) -> None:
    """Three times, a worker is sent SIGTERM in the middle of a drain: it exits 0 after its
    in-flight jobs finished and were recorded; no job is left claimed ("running") behind it
    and the jobs it never claimed have attempt 0. A last worker drains the rest: every job
    ran exactly once."""
    rng = random.Random(SEED)
    prepare(db_url)
    jobs = service.add_jobs(exec_jobs(200, sleep=lambda _: round(rng.uniform(0, 0.2), 3)))
    exits = []
    for _ in range(3):
        worker = fleet.start(db_url, 4, **STEADY)
        target = runs_started(db_url) + rng.randint(20, 40)
        wait_for(lambda: runs_started(db_url) >= target, 30, "the drain is under way")  # noqa: B023  # called within this iteration
        in_flight = int(one(db_url, "select count(*) from exec_log where ended_at is null"))
        sent = time.monotonic()
        assert worker.terminate(60) == 0, worker.log()
        exits.append({"in_flight": in_flight, "exit_seconds": round(time.monotonic() - sent, 2)})
        assert one(db_url, "select count(*) from exec_log where ended_at is null") == 0
        running = one(
            db_url, "select count(*) from worker.job where started_at is not null and stopped_at is null"
        )
        assert running == 0, "a claimed job was left behind"
        assert one(db_url, "select count(*) from worker.job where stopped_at is null and attempt <> 0") == 0
    fleet.start(db_url, 4, **STEADY)
    wait_for(lambda: unfinished(db_url) == 0, 60, "the last worker drains the rest")
    acc = Accounting.load(db_url)
    assert len(acc.jobs) == len(jobs)
    acc.check(reaps_allowed=False)
    assert acc.figures()["extra_runs"] == 0
    report("sigterm", terminations=exits, **acc.figures())
