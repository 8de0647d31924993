"""``python -m bench.hotpath``: CPU cost per job of the worker's in-process hot path, no database.

For each of ``--jobs`` claimed no-op jobs: build its Run, queue it in the Slots, take it
as a worker thread would, run the attempt (the one attempt runner, settle included) and
free its slot. Prints the best of ``--repeat`` passes in microseconds per job. Wall-clock
W3 on a shared machine is too noisy to compare two versions within a few percent; this is
not (run it against each checkout in turn).
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import timedelta

import jobqueue
from jobworker import Registry
from jobworker._errors import ErrorReporter
from jobworker._execute import run_attempt
from jobworker._slots import Run, Slots, WorkerHandle


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.hotpath")
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    registry = Registry()
    registry.register("bench.noop", lambda job: None)
    handler = registry.handler("bench.noop")
    assert handler is not None
    report = ErrorReporter()
    jobs = []
    for i in range(args.jobs):
        job = jobqueue.new_job("bench.noop", "bench", {"i": i})
        job.claim_token, job.attempt = uuid.uuid4(), 1
        jobs.append(job)
    slots = Slots(16, lambda job_type: None, 32)
    thread = WorkerHandle()
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for job in jobs:
            slots.add([Run(job, handler, timedelta(minutes=1), None)])
            run = slots.take(thread)
            assert run is not None
            run_attempt(registry, run, report, slots.handler_returned)
            slots.release(run)
        best = min(best, (time.perf_counter() - t0) / len(jobs))
    print(f"{best * 1e6:.2f} us per job (Run, add, take, run_attempt, release; best of {args.repeat})")


if __name__ == "__main__":
    main()
