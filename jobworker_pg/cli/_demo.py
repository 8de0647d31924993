"""``jobqueue demo``: a few thousand jobs through real workers, in a few seconds.

Registers example job types on a private :class:`jobworker.Registry` (so the
demo never touches the process's default one), enqueues with
``jobqueue.add_many`` and ``jobqueue.add_bundle``, runs a worker pool and ends
with a status table. The job types:

- ``demo.thumbnail``: a little CPU work and a simulated 2 ms of I/O;
- ``demo.email``: a simulated 5 ms call to a mail server;
- ``demo.flaky``: fails on its first attempt, succeeds on the retry, which
  ``register_schedule_retry`` schedules 0.3 s later (instead of the default backoff);
- bundles of ``demo.thumbnail`` jobs of type ``demo.album``, whose durable
  completion handler (``Registry.bundle_handler``) runs once per finished bundle.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import click

import jobqueue
from jobqueue import Job, JobBundle, JobDesc
from jobworker import Registry, WorkerPool
from jobworker_pg._init import init_job_queue
from jobworker_pg._queries import q
from jobworker_pg.cli._context import State, pass_state
from jobworker_pg.cli._format import status_table
from jobworker_pg.cli._progress import Counters, Reporter

RETRY_DELAY = timedelta(seconds=0.3)
BUNDLE_SIZE = 25
#: The demo gives up when its jobs are not all done after this long.
DEMO_TIMEOUT = 120.0


class DemoRun:
    """The handlers of one demo run, registered on a private registry."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.albums_done = 0
        self._lock = threading.Lock()
        self.registry.register("demo.thumbnail", self.thumbnail)
        self.registry.register("demo.email", self.email)
        self.registry.register("demo.flaky", self.flaky)
        self.registry.register_schedule_retry("demo.flaky", lambda job: datetime.now(UTC) + RETRY_DELAY)
        self.registry.register_bundle_handler("demo.album", self.album_done)

    @staticmethod
    def thumbnail(job: Job) -> dict[str, Any]:
        """Pretend to make a thumbnail: hash some bytes, wait 2 ms for "storage"."""
        digest = hashlib.sha256(f"image-{job.payload['image']}".encode() * 64).hexdigest()
        time.sleep(0.002)
        return {"image": job.payload["image"], "thumbnail": f"thumbs/{digest[:12]}.jpg"}

    @staticmethod
    def email(job: Job) -> dict[str, Any]:
        """Pretend to send an email (5 ms)."""
        time.sleep(0.005)
        return {"sent_to": job.payload["to"]}

    @staticmethod
    def flaky(job: Job) -> str:
        """Fail the first attempt, as a call to a flaky service would; succeed on the retry."""
        if job.attempt < 2:
            raise ConnectionError("upstream timed out (simulated); the retry will succeed")
        return f"succeeded on attempt {job.attempt}"

    def album_done(self, bundle: JobBundle) -> dict[str, Any]:
        """The durable bundle handler: runs once, when every thumbnail of the album is done."""
        with self._lock:
            self.albums_done += 1
        return {"album": bundle.id.hex[:8], "thumbnails": sum(1 for j in bundle.jobs if j.succeeded)}


def _enqueue(origin: str, jobs: int, albums: int) -> tuple[int, Job | None]:
    """Add the demo's jobs; returns how many and one flaky job (to suggest `jobqueue show`)."""
    flaky = max(1, jobs // 30)
    emails = (jobs - flaky) // 3
    thumbnails = jobs - flaky - emails
    batch: list[Job] = [jobqueue.new_job("demo.thumbnail", origin, {"image": i}) for i in range(thumbnails)]
    batch += [jobqueue.new_job("demo.email", origin, {"to": f"user{i}@example.com"}) for i in range(emails)]
    flaky_jobs = [
        jobqueue.new_job("demo.flaky", origin, {"call": i}, max_retry_count=2, priority=1)
        for i in range(flaky)
    ]
    jobqueue.add_many(flaky_jobs + batch)
    for album in range(albums):
        descs = [
            JobDesc(type="demo.thumbnail", payload={"image": f"album{album}-{i}"}) for i in range(BUNDLE_SIZE)
        ]
        jobqueue.add_bundle(jobqueue.new_job_bundle("demo.album", origin, descs))
    return jobs + albums * BUNDLE_SIZE, flaky_jobs[0]


@click.command()
@click.option(
    "--jobs", "num_jobs", type=click.IntRange(min=10), default=3000, show_default=True, help="Jobs to add."
)
@click.option(
    "--albums", type=click.IntRange(min=0), default=8, show_default=True, help="Bundles of 25 jobs to add."
)
@click.option(
    "--threads", "-n", type=click.IntRange(min=1), default=8, show_default=True, help="Worker threads."
)
@pass_state
def demo(state: State, num_jobs: int, albums: int, threads: int) -> None:
    """Enqueue a few thousand example jobs and run them, with progress and a status table.

    Runs on the embedded PostgreSQL unless a database URL is given. Its jobs
    stay in the database afterwards: look at them with `jobqueue jobs`.
    """
    target = state.target()
    state.connect().close()
    reporter = Reporter(interval=2.0)
    reporter.route_logging()
    run = DemoRun()
    counters = Counters()
    run.registry.add_after_job_hook(counters.after_job)
    origin = f"demo-{uuid.uuid4().hex[:8]}"
    service = init_job_queue(target.url)
    pool = WorkerPool(database=service, registry=run.registry, name="jobqueue-demo")
    click.echo(f"database: {target.masked}{' (embedded)' if target.embedded else ''}")
    try:
        started = time.monotonic()
        pool.start_threads(threads)
        added, flaky_job = _enqueue(origin, num_jobs, albums)
        click.echo(
            f"added {added} jobs ({albums} bundles of {BUNDLE_SIZE}) in {time.monotonic() - started:.1f} s; "
            f"running them on {threads} threads"
        )
        total = added + albums  # plus one completion job per bundle
        _wait(state, origin, run, albums, counters, reporter, total)
        elapsed = time.monotonic() - started
        pool.finish_threads(10)
        reporter.finish()
        done, failed, _ = counters.snapshot()
        click.echo(
            f"\ndone in {elapsed:.1f} s: {done} jobs succeeded ({done / elapsed:.0f}/s), "
            f"{failed} failed attempts retried, {run.albums_done} bundle handlers ran\n"
        )
        click.echo(status_table(service.get_status()))
        if flaky_job is not None:
            click.echo(f"\nsee a job that failed once and then succeeded: jobqueue show {flaky_job.id}")
    finally:
        pool.stop_threads()
        service.close()


def _wait(
    state: State, origin: str, run: DemoRun, albums: int, counters: Counters, reporter: Reporter, total: int
) -> None:
    deadline = time.monotonic() + DEMO_TIMEOUT
    with state.connect() as conn:
        while True:
            done, failed, rate = counters.snapshot()
            width = 30
            filled = min(width, width * done // max(total, 1))
            reporter.show(
                f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} done, "
                f"{failed} failed attempts (retrying), {rate:.0f} jobs/s"
            )
            row = conn.execute(q("count_unstopped_of_origin"), {"origin": origin}).fetchone()
            if row is not None and row[0] == 0 and run.albums_done >= albums:
                reporter.show(f"[{'#' * width}] {done}/{total} done", force=True)
                return
            if time.monotonic() > deadline:
                raise click.ClickException(f"the demo's jobs did not finish within {DEMO_TIMEOUT:.0f} s")
            time.sleep(0.2)
