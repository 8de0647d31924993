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

import pytest
from faultkit import (
    STEADY,
    STEADY_DEAD_FOR,
    Accounting,
    Fleet,
    exec_jobs,
    prepare,
    report,
    summary,
    unfinished,
    wait_for,
)

from jobworker_pg import PostgresService

pytestmark = pytest.mark.faults

SEED = int(os.environ.get("JOBQUEUE_FAULTS_SEED", "20240607"))

# The kill storm: 100 SIGKILL + restart cycles over 4 workers x 4 threads draining 5,000 jobs.
STORM_WORKERS, STORM_THREADS = 4, 4
STORM_CYCLES = 100
STORM_JOBS = 5000
STORM_MEAN_JOB_SECONDS = 0.25  # runs last 0..0.5 s: the drain outlasts the storm
STORM_MAX_RETRIES = 10


@pytest.mark.timeout(300)
def test_kill_storm_loses_no_job_and_runs_no_attempt_twice(
    service: PostgresService, db_url: str, fleet: Fleet
) -> None:
    """100 cycles of SIGKILL to a random one of 4 workers, each replaced at once, while
    5,000 jobs drain: every job ends succeeded, no two attempts of a job overlap, and a
    job runs at most once more than the kills that hit it."""
    rng = random.Random(SEED)
    prepare(db_url)
    workers = fleet.start_many(db_url, STORM_WORKERS, STORM_THREADS, **STEADY)
    service.add_jobs(
        exec_jobs(
            STORM_JOBS,
            sleep=lambda _: round(rng.uniform(0, 2 * STORM_MEAN_JOB_SECONDS), 3),
            max_retry_count=STORM_MAX_RETRIES,
        )
    )
    started = time.monotonic()
    kills_mid_drain = 0
    cycle_seconds = []
    for _ in range(STORM_CYCLES):
        cycle_start = time.monotonic()
        time.sleep(rng.uniform(0, 0.4))  # let the survivors claim, run and save in between
        if unfinished(db_url) > 0:
            kills_mid_drain += 1
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
    assert len(acc.jobs) == STORM_JOBS
    acc.check(reaps_allowed=True)
    assert all(j.attempt == 1 + len(j.lost_attempts) for j in acc.jobs.values()), (
        "every attempt but the last was ended by a kill"
    )
    figures = acc.figures()
    assert kills_mid_drain == STORM_CYCLES, (
        f"the drain ended before the storm: {kills_mid_drain} kills hit it"
    )
    report(
        "kill_storm",
        seed=SEED,
        workers=STORM_WORKERS,
        threads=STORM_THREADS,
        cycles=STORM_CYCLES,
        kills_mid_drain=kills_mid_drain,
        dead_for=STEADY_DEAD_FOR,
        storm_seconds=round(storm_seconds, 1),
        cycle_seconds=summary(cycle_seconds),
        unfinished_after_storm=left_after_storm,
        drain_seconds=round(drain_seconds, 1),
        extra_runs_per_kill=round(figures["extra_runs"] / STORM_CYCLES, 2),
        jobs_hit_per_kill=round(figures["jobs_hit_by_a_kill"] / STORM_CYCLES, 2),
        **figures,
    )
