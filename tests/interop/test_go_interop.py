"""Go and Python processes share one queue: go-jobqueue (the real library, driven through
tests/interop/goprog) and pg-jobqueue as producers, workers and listeners, with every
invariant checked in the database: each attempt counted once, bundle counts exact, a
cancelled job never run, both languages' listeners hearing every stop.

Needs GO, GO_JOBQUEUE_SRC and GO_DEPS_DIR (docs/interop.md); skipped otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import psycopg
import pytest
from helpers import wait_for
from interop.harness import EVENT_TIMEOUT, GoProcess, Heard, SharedDb

import jobqueue
from jobqueue import JobDesc, JobState
from jobworker import Registry, WorkerPool
from jobworker_pg import PostgresService

# Each wait has its own EVENT_TIMEOUT; a test may wait several times on a loaded machine.
pytestmark = pytest.mark.timeout(600)

GoWorker = Callable[..., GoProcess]
PyWorker = Callable[..., WorkerPool]
GoCommand = Callable[..., dict[str, Any]]


def _stopped(service: PostgresService, ids: list[uuid.UUID]) -> bool:
    return all(service.get_job(job_id).stopped for job_id in ids)


def test_python_enqueues_and_go_runs_jobs_and_a_bundle(
    service: PostgresService, shared_db: SharedDb, go_worker: GoWorker, heard: Heard
) -> None:
    go = go_worker(["interop.py2go", "interop.bundled"], threads=4)
    jobs = service.add_jobs([jobqueue.new_job("interop.py2go", "py", {"n": i}) for i in range(100)])
    bundle = service.add_job_bundle(
        jobqueue.new_job_bundle(
            "interop.b", "py", [JobDesc(type="interop.bundled", payload=i) for i in range(5)]
        )
    )
    ids = [job.id for job in jobs] + [job.id for job in bundle.jobs]

    heard.wait(
        lambda h: set(ids) <= set(h.final_stops()) and bundle.id in h.bundles, "Python hears 105 stops"
    )
    go_bundle = go.wait_event("job_bundle_stopped")
    assert (go_bundle["id"], go_bundle["numJobs"], go_bundle["numJobsStopped"]) == (str(bundle.id), 5, 5)
    # go-jobqueue's listener loads each stopped job first and drops the stops of jobs
    # already gone: its own default listener deletes the bundle (and its jobs) once it stops.
    standalone = {str(job_id) for job_id in ids[:100]}
    wait_for(
        lambda: standalone <= {e["id"] for e in go.events_of("job_stopped")},
        EVENT_TIMEOUT,
        "Go hears 100 stops",
    )
    assert {e["id"] for e in go.events_of("job_stopped")} <= set(map(str, ids))
    assert shared_db.run_counts() == dict.fromkeys(ids, 1)  # each exactly once
    assert {service.get_job(job_id).result["by"] for job_id in ids[:100]} == {"go"}
    assert heard.bundles == [bundle.id]  # once
    # go-jobqueue's default listener deletes a bundle that stopped without errors.
    wait_for(lambda: shared_db.bundle_counts(bundle.id) is None, EVENT_TIMEOUT, "Go deletes the bundle")


def test_go_enqueues_and_python_runs_with_listeners_on_both_sides(
    service: PostgresService,
    shared_db: SharedDb,
    go_worker: GoWorker,
    go_command: GoCommand,
    python_worker: PyWorker,
    heard: Heard,
) -> None:
    go_listener = go_worker([])  # listens only
    python_worker(["interop.go2py"], threads=4)
    ids = [uuid.UUID(i) for i in go_command("add", "-type", "interop.go2py", "-n", "50")["ids"]]
    added = go_command("add-bundle", "-type", "interop.gob", "-job-type", "interop.go2py", "-n", "5")
    bundle_id = uuid.UUID(added["id"])
    ids += [uuid.UUID(i) for i in added["ids"]]

    heard.wait(lambda h: set(ids) <= set(h.final_stops()) and bundle_id in h.bundles, "Python hears 55 stops")
    # (go-jobqueue's listener drops the stops of jobs already deleted with their bundle.)
    standalone = {str(job_id) for job_id in ids[:50]}
    wait_for(
        lambda: standalone <= {e["id"] for e in go_listener.events_of("job_stopped")},
        EVENT_TIMEOUT,
        "Go hears the 50 stops",
    )
    assert {e["id"] for e in go_listener.events_of("job_stopped")} <= set(map(str, ids))
    assert {e["willRetry"] for e in go_listener.events_of("job_stopped")} == {False}
    go_bundle = go_listener.wait_event("job_bundle_stopped")
    assert (go_bundle["numJobs"], go_bundle["numJobsStopped"]) == (5, 5)
    assert shared_db.run_counts() == dict.fromkeys(ids, 1)
    # (The bundle's jobs went with it: go-jobqueue's default listener deletes a stopped bundle.)
    assert {service.get_job(job_id).result["by"] for job_id in ids[:50]} == {"py"}
    job = service.get_job(ids[0])
    assert (job.attempt, job.origin, job.state) == (1, "go-interop", JobState.SUCCEEDED)
    # go-jobqueue reads the row Python wrote.
    go_view = go_command("get", "-id", str(ids[0]))
    assert (go_view["result"], go_view["currentRetryCount"]) == ({"by": "py", "run": 1}, 0)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_go_and_a_python_worker_drain_2000_jobs_together_each_exactly_once(
    service: PostgresService, shared_db: SharedDb, go_worker: GoWorker, python_worker: PyWorker, heard: Heard
) -> None:
    go = go_worker(["interop.shared"], threads=4)
    python_worker(["interop.shared"], threads=4)
    jobs = service.add_jobs([jobqueue.new_job("interop.shared", "py", i) for i in range(2000)])
    ids = {job.id for job in jobs}

    wait_for(lambda: _all_stopped(shared_db), 600, "2,000 jobs stopped", interval=0.5)
    counts = shared_db.run_counts()
    assert set(counts) == ids and set(counts.values()) == {1}
    runners = shared_db.runners()
    assert runners["go"] > 0 and runners["py"] > 0 and runners["go"] + runners["py"] == 2000
    heard.wait(lambda h: ids <= set(h.final_stops()), "Python hears 2,000 stops")
    wait_for(lambda: len(go.events_of("job_stopped")) >= 2000, EVENT_TIMEOUT, "Go hears 2,000 stops")
    assert {e["id"] for e in go.events_of("job_stopped")} == set(map(str, ids))
    assert service.get_status().succeeded == 2000


def _all_stopped(shared_db: SharedDb) -> bool:
    with psycopg.connect(shared_db.url) as conn:
        row = conn.execute("select count(*) from worker.job where stopped_at is null").fetchone()
    return row == (0,)


def _run_ended(service: PostgresService, shared_db: SharedDb, job_id: uuid.UUID, run: int) -> bool:
    return len(shared_db.runs(job_id)) == run and service.get_job(job_id).state is not JobState.RUNNING


def _make_due(service: PostgresService, job_type: str) -> None:
    assert service.make_jobs_due([job_type]) == 1


def _retry_later(registry: Registry, job_type: str) -> None:
    registry.register_schedule_retry(job_type, lambda job: datetime.now(UTC) + timedelta(hours=1))


@pytest.mark.parametrize("first", ["go", "py"])
def test_a_failing_job_is_retried_across_languages_with_each_attempt_counted_once(
    first: str,
    service: PostgresService,
    shared_db: SharedDb,
    go_worker: GoWorker,
    python_worker: PyWorker,
    heard: Heard,
) -> None:
    """Attempts alternate between languages (each retry is scheduled an hour ahead and made
    due by the test once the other language's worker runs). max_retry_count=2: 3 runs."""
    job_type = f"interop.retry.{first}"
    succeed = first == "py"  # py, go, py succeeds on run 3; go, py, go fails for good
    job = service.add_job(
        jobqueue.new_job(job_type, "py", {"fail_runs": 2 if succeed else 9}, max_retry_count=2)
    )
    order = ["go", "py", "go"] if first == "go" else ["py", "go", "py"]
    for run, runner in enumerate(order, start=1):
        if run > 1:
            _make_due(service, job_type)
        if runner == "go":
            worker: GoProcess | WorkerPool = go_worker([job_type], threads=1, poll="200ms", retry_delay="1h")
        else:
            worker = python_worker([job_type], threads=1, setup=lambda r: _retry_later(r, job_type))
        wait_for(
            partial(_run_ended, service, shared_db, job.id, run),
            EVENT_TIMEOUT,
            f"run {run} by {runner} ended",
        )
        if isinstance(worker, GoProcess):
            worker.finish()
        else:
            worker.finish_threads(EVENT_TIMEOUT)
        seen = service.get_job(job.id)
        assert seen.attempt == run  # counted once, whoever ran it
        assert len(seen.errors) == (run if run < 3 or not succeed else 2)
    assert shared_db.runs(job.id) == order  # never a 4th run, whoever retries
    final = service.get_job(job.id)
    assert final.state is (JobState.SUCCEEDED if succeed else JobState.FAILED)
    assert [e.attempt for e in final.errors] == ([1, 2] if succeed else [1, 2, 3])
    heard.wait(lambda h: job.id in h.final_stops(), "Python hears the final stop")
    assert heard.stopped == [(job.id, True), (job.id, True), (job.id, False)]


def test_cancel_reset_and_delete_of_bundle_jobs_from_each_side_keep_counts_exact(
    service: PostgresService,
    shared_db: SharedDb,
    go_worker: GoWorker,
    go_command: GoCommand,
    python_worker: PyWorker,
    heard: Heard,
) -> None:
    bundle = service.add_job_bundle(
        jobqueue.new_job_bundle(
            "interop.ops", "py", [JobDesc(type="interop.ops", payload=i) for i in range(6)]
        )
    )
    ids = [job.id for job in bundle.jobs]
    # Python cancels one before any worker runs; Go deletes one, Python deletes one.
    assert service.cancel_job(ids[0]).state is JobState.CANCELLED
    assert shared_db.bundle_counts(bundle.id) == (6, 1)
    go_command("delete", "-id", str(ids[1]))
    assert shared_db.bundle_counts(bundle.id) == (6, 1)  # go-jobqueue's DeleteJob does not count
    service.delete_job(ids[2])
    assert shared_db.bundle_counts(bundle.id) == (6, 2)  # ours counts an unstopped job stopped

    go = go_worker(["interop.ops"], threads=2)
    wait_for(lambda: _stopped(service, ids[3:]), EVENT_TIMEOUT, "Go runs the rest", interval=0.2)
    assert shared_db.runs(ids[0]) == []  # the cancelled job never ran on Go
    assert service.get_job(ids[0]).state is JobState.CANCELLED
    assert shared_db.bundle_counts(bundle.id) == (6, 5)  # the job Go deleted keeps it open
    go.finish()

    # Go resets a job Python sees finished: the count goes down once; Python resets another.
    go_command("reset", "-id", str(ids[3]))
    assert shared_db.bundle_counts(bundle.id) == (6, 4)
    assert service.reset_job(ids[4]).state is JobState.PENDING
    assert shared_db.bundle_counts(bundle.id) == (6, 3)
    python_worker(["interop.ops"], threads=2)
    wait_for(lambda: _stopped(service, ids[3:5]), EVENT_TIMEOUT, "Python reruns the reset jobs")
    assert shared_db.bundle_counts(bundle.id) == (6, 5)
    assert [len(shared_db.runs(job_id)) for job_id in ids[3:]] == [2, 2, 1]
    # Go resets the cancelled job: it runs now, and the bundle completes.
    go_command("reset", "-id", str(ids[0]))
    assert shared_db.bundle_counts(bundle.id) == (6, 4)
    wait_for(lambda: service.get_job(ids[0]).stopped, EVENT_TIMEOUT, "Python runs the reset cancelled job")
    assert shared_db.bundle_counts(bundle.id) == (6, 5)
    assert heard.bundles == []  # 5 of 6: the job Go deleted was never counted


def test_go_deleting_a_stopped_bundle_does_not_break_the_durable_bundle_handler(
    service: PostgresService,
    shared_db: SharedDb,
    go_worker: GoWorker,
    python_worker: PyWorker,
) -> None:
    got: list[jobqueue.JobBundle] = []
    service.declare_bundle_handlers({"interop.h": 3})  # as a Python worker with the handler did once
    go_worker(["interop.handled"], threads=2)  # its default listener deletes stopped bundles
    bundle = service.add_job_bundle(
        jobqueue.new_job_bundle(
            "interop.h", "py", [JobDesc(type="interop.handled", payload=i) for i in range(5)]
        )
    )
    wait_for(lambda: shared_db.bundle_counts(bundle.id) is None, EVENT_TIMEOUT, "Go deletes the bundle")
    # Only now a Python worker with the durable handler starts: the bundle row is gone.
    python_worker([], threads=1, setup=lambda r: r.register_bundle_handler("interop.h", got.append))
    wait_for(lambda: got, EVENT_TIMEOUT, "the bundle handler runs")
    (done,) = got
    assert (done.id, done.num_jobs, done.num_jobs_stopped) == (bundle.id, 5, 5)
    assert sorted(job.payload for job in done.jobs) == [0, 1, 2, 3, 4]
    assert {job.result["by"] for job in done.jobs} == {"go"}
