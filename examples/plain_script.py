"""A producer and a worker in one plain script.

    python examples/plain_script.py                 # on $DATABASE_URL, else the embedded PostgreSQL
    python examples/plain_script.py postgresql://user:password@localhost/app

In a real deployment the two halves run in different processes: the producer
is your application, the worker is ``jobqueue worker yourapp.jobs``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass

import jobqueue
import jobworker
from jobworker_pg import init_job_queue, install_schema


@dataclass
class Resize:
    """The payload of a resize job; its job type is jobqueue.job_type_of(Resize)."""

    image: str
    width: int


@jobworker.job()  # the job type comes from the annotation: "__main__.Resize" here
def resize(payload: Resize) -> dict[str, str]:
    return {"thumbnail": f"{payload.image}@{payload.width}px"}


@jobworker.job("email.send")  # a plain handler gets the whole Job
def send_email(job: jobqueue.Job) -> str:
    return f"sent to {job.payload['to']}"


def database_url() -> str:
    """The URL from the command line or the environment, else the embedded server's."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    url = os.environ.get("JOBQUEUE_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        return url
    # `jobqueue embedded url` starts the embedded server if needed and prints its URL.
    command = [sys.executable, "-m", "jobworker_pg.cli", "embedded", "url"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    url = database_url()
    install_schema(url)  # idempotent; `jobqueue migrate` does the same
    init_job_queue(url)  # the default service, and the database of the worker threads

    # Producer: enqueue; each add commits, and the workers are notified at commit.
    jobs = jobqueue.add_many(
        [
            jobqueue.new_job(jobqueue.job_type_of(Resize), "example", Resize(f"img{i}.png", 128))
            for i in range(20)
        ]
        + [jobqueue.new_job("email.send", "example", {"to": "ada@example.com"}, max_retry_count=3)]
    )
    ids = {job.id for job in jobs}

    # Know when they are done: a listener fires in this process after each attempt.
    remaining = threading.Semaphore(0)

    def stopped(job: jobqueue.Job, will_retry: bool) -> None:
        if job.id in ids and not will_retry:
            remaining.release()

    jobqueue.add_job_stopped_listener(stopped)

    # Worker: threads claim jobs (FOR UPDATE SKIP LOCKED) and store results.
    jobworker.start_threads(4)
    try:
        for _ in ids:
            if not remaining.acquire(timeout=30):
                raise SystemExit("jobs did not finish within 30 s")
    finally:
        jobworker.finish_threads(timeout=10)
        jobqueue.remove_job_stopped_listener(stopped)

    for job in jobs[-2:]:
        done = jobqueue.get_job(job.id)
        print(f"{done.type}: {done.state.value}, result {done.result}")
    counts = jobqueue.get_status().by_type
    for job_type in (jobqueue.job_type_of(Resize), "email.send"):
        print(f"{job_type}: {counts[job_type].succeeded} succeeded in total")
    jobqueue.close()


if __name__ == "__main__":
    main()
