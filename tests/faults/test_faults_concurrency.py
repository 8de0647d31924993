"""Many producers at once: 1,000 jobs from 50 threads in 5 processes while workers drain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faultkit import STEADY, Accounting, Fleet, all_rows, prepare, report, unfinished, wait_for

pytestmark = pytest.mark.faults

PRODUCER = str(Path(__file__).with_name("producer.py"))
PROCESSES, THREADS, PER_THREAD = 5, 10, 20


@pytest.mark.timeout(180)
def test_1000_jobs_enqueued_from_50_threads_in_5_processes_each_run_once(db_url: str, fleet: Fleet) -> None:
    """5 processes x 10 threads add 20 jobs each (one by one, in batches, and inside their own
    transactions, all at once) while 2 workers drain: no error, no deadlock, each job runs
    exactly once, and the one job each thread rolled back never exists."""
    prepare(db_url)
    workers = fleet.start_many(db_url, 2, 4, **STEADY)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]),
    }
    producers = [
        subprocess.Popen(
            [sys.executable, PRODUCER, db_url, str(THREADS), str(PER_THREAD), f"p{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for n in range(PROCESSES)
    ]
    try:
        for p in producers:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        started = time.monotonic()
        for p in producers:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=120)[0] for p in producers]
        enqueue_seconds = time.monotonic() - started
    finally:
        for p in producers:
            if p.poll() is None:
                p.kill()
    results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    errors = [e for r in results for e in r["errors"]]
    assert errors == [], errors[0]
    assert [p.returncode for p in producers] == [0] * PROCESSES, outputs
    added = {i for r in results for i in r["added"]}
    rolled_back = {i for r in results for i in r["rolled_back"]}
    assert len(added) == PROCESSES * THREADS * PER_THREAD
    assert len(rolled_back) == PROCESSES * THREADS

    wait_for(lambda: unfinished(db_url) == 0, 60, "the drain completes", 0.1)
    drain_seconds = time.monotonic() - started
    stored = {str(r[0]) for r in all_rows(db_url, "select id from worker.job")}
    assert stored == added, (len(stored), len(added))
    ran = {str(r[0]) for r in all_rows(db_url, "select distinct job_id from exec_log")}
    assert ran == added and not ran & rolled_back
    acc = Accounting.load(db_url)
    acc.check(reaps_allowed=False)
    assert acc.figures()["extra_runs"] == 0
    for w in workers:
        assert w.terminate() == 0, w.log()[-3000:]
    report(
        "concurrent_enqueue",
        processes=PROCESSES,
        threads_per_process=THREADS,
        jobs=len(added),
        rolled_back_jobs=len(rolled_back),
        errors=len(errors),
        enqueue_seconds=round(enqueue_seconds, 2),
        per_process_seconds=[r["seconds"] for r in results],
        enqueue_jobs_per_second=round(len(added) / enqueue_seconds, 1),
        drained_after_seconds=round(drain_seconds, 2),
        **{k: v for k, v in acc.figures().items() if k != "jobs"},
    )
