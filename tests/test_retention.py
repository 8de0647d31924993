"""Retention: finished jobs and bundles past their age are pruned by the worker's maintenance,
in batches, one process at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import wait_for

import jobqueue
import jobworker
from jobqueue import JobDesc
from jobworker import Outcome, OutcomeKind, Retention, WorkerPool
from jobworker._retention import DEFAULT_PRUNE_MAX_BATCHES
from jobworker_pg import PostgresService
from jobworker_pg._service import PRUNE_LOCK_KEY

PRUNE_APP = str(Path(__file__).with_name("prune_app.py"))


def _finished(
    conn: psycopg.Connection[Any], n: int, days_ago: float, *, state: str = "succeeded", bundle: Any = None
) -> list[Any]:
    """Insert ``n`` jobs that stopped ``days_ago`` days ago in ``state``; their ids."""
    rows = conn.execute(
        """insert into worker.job (id, type, payload, origin, started_at, worker_alive_at, stopped_at,
                                   attempt, error_msg, cancelled_at, bundle_id)
           select gen_random_uuid(), 't', to_jsonb(g), 'o', s, s, s, 1,
                  case when %(state)s <> 'succeeded' then 'boom' end,
                  case when %(state)s = 'cancelled' then s end, %(bundle)s
           from generate_series(1, %(n)s) g, (select now() - make_interval(days => %(days)s) as s) t
           returning id""",
        {"n": n, "days": days_ago, "state": state, "bundle": bundle},
    ).fetchall()
    conn.commit()
    return [r[0] for r in rows]


def _exists(conn: psycopg.Connection[Any], ids: list[Any]) -> int:
    row = conn.execute("select count(*) from worker.job where id = any(%s)", (ids,)).fetchone()
    conn.commit()
    return int(row[0]) if row else 0


def test_defaults_keep_failed_jobs_longer(service: PostgresService, conn: psycopg.Connection[Any]) -> None:
    old_ok = _finished(conn, 3, 8)
    new_ok = _finished(conn, 2, 1)
    failed_8d = _finished(conn, 2, 8, state="failed")
    failed_31d = _finished(conn, 2, 31, state="failed")
    cancelled_8d = _finished(conn, 1, 8, state="cancelled")
    waiting = service.add_jobs([jobqueue.new_job("t", "o", i) for i in range(2)])
    assert service.prune_finished(Retention()) == 3 + 2 + 1
    assert _exists(conn, old_ok + failed_31d + cancelled_8d) == 0
    assert _exists(conn, new_ok + failed_8d + [j.id for j in waiting]) == 2 + 2 + 2


def _succeeded(job: jobqueue.Job) -> Outcome:
    assert job.claim_token is not None
    return Outcome(
        job.id, job.claim_token, OutcomeKind.SUCCEEDED, job.attempt, "null", bundle_id=job.bundle_id
    )


def test_a_none_age_keeps_that_state_forever(service: PostgresService, conn: psycopg.Connection[Any]) -> None:
    ok = _finished(conn, 2, 400)
    failed = _finished(conn, 2, 400, state="failed")
    assert service.prune_finished(Retention(succeeded=None, failed=timedelta(days=1))) == 2
    assert _exists(conn, ok) == 2 and _exists(conn, failed) == 0
    assert service.prune_finished(Retention.off()) == 0


def test_finished_bundles_go_with_their_jobs_and_open_ones_stay(
    service: PostgresService, conn: psycopg.Connection[Any]
) -> None:
    done = service.add_job_bundle(jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload=1)] * 3))
    still_open = service.add_job_bundle(jobqueue.new_job_bundle("b", "o", [JobDesc(type="u", payload=1)] * 2))
    # Run the done bundle's jobs as a worker does: the outcome statement counts them in the bundle.
    claimed = service.claim_jobs(["t"], 10)
    assert {j.id for j in claimed} == {j.id for j in done.jobs}
    service.save_outcomes([_succeeded(job) for job in claimed])
    conn.execute(  # one job of the open bundle stopped long ago: it stays with its bundle
        "update worker.job set started_at = now() - interval '40 days',"
        " stopped_at = now() - interval '40 days' where id = %s",
        (still_open.jobs[0].id,),
    )
    conn.execute("update worker.job_bundle set updated_at = now() - interval '8 days'")
    conn.commit()
    assert service.prune_finished(Retention()) == 1
    count = conn.execute("select count(*) from worker.job_bundle").fetchone()
    jobs = conn.execute("select count(*) from worker.job").fetchone()
    assert count == (1,) and jobs == (2,)


def test_prunes_in_batches_in_one_call(service: PostgresService, conn: psycopg.Connection[Any]) -> None:
    ids = _finished(conn, 35, 10)
    assert service.prune_finished(Retention(batch_size=10)) == 35
    assert _exists(conn, ids) == 0


def test_skips_while_another_process_prunes(service: PostgresService, conn: psycopg.Connection[Any]) -> None:
    ids = _finished(conn, 5, 10)
    with psycopg.connect(service.conninfo, autocommit=True) as other:
        other.execute("select pg_advisory_lock(%s)", (PRUNE_LOCK_KEY,))
        assert service.prune_finished(Retention()) is None
        assert _exists(conn, ids) == 5
        # Explicitly: a closed session's locks go only once its backend has exited.
        other.execute("select pg_advisory_unlock(%s)", (PRUNE_LOCK_KEY,))
    assert service.prune_finished(Retention()) == 5


def test_retention_is_validated() -> None:
    with pytest.raises(ValueError, match="retention failed must be positive"):
        Retention(failed=timedelta(seconds=-1))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        Retention(batch_size=0)
    with pytest.raises(TypeError, match="unknown retention setting 'sucess'"):
        Retention().replace(sucess=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"retention must be a jobworker\.Retention"):
        jobworker.WorkerSettings().replace(retention={"succeeded": 1})  # type: ignore[arg-type]
    assert Retention().replace(succeeded=60).succeeded == timedelta(minutes=1)
    default = Retention()
    assert default.succeeded is not None and default.failed is not None
    assert default.failed == timedelta(days=30) > default.succeeded  # failed kept longer


@pytest.fixture
def pool(service: PostgresService) -> Iterator[WorkerPool]:
    registry = jobworker.Registry()
    registry.register("t.ok", lambda job: None)

    def fail(job: jobqueue.Job) -> None:
        raise RuntimeError("boom")

    registry.register("t.fail", fail)
    pool = WorkerPool(service, registry, name="jobworker-retention")
    yield pool
    pool.stop_threads()


def test_the_worker_prunes_on_its_own(
    service: PostgresService, pool: WorkerPool, conn: psycopg.Connection[Any]
) -> None:
    pool.configure(
        retention=Retention(succeeded=timedelta(0), failed=timedelta(days=1), interval=timedelta(seconds=0.1))
    )
    ok = service.add_jobs([jobqueue.new_job("t.ok", "o", i) for i in range(5)])
    failed = service.add_job(jobqueue.new_job("t.fail", "o", 1))
    pool.start_threads(2)
    wait_for(lambda: _exists(conn, [j.id for j in ok]) == 0, 20, "succeeded jobs pruned")
    assert service.get_job(failed.id).stopped  # failed: kept for a day
    pool.finish_threads()


def test_the_worker_keeps_pruning_while_rounds_come_back_full(
    service: PostgresService, pool: WorkerPool, conn: psycopg.Connection[Any]
) -> None:
    """A backlog bigger than one round (10 batches) goes in rounds back to back, not one
    round per interval (an hour here)."""
    ids = _finished(conn, 30 * 10 * DEFAULT_PRUNE_MAX_BATCHES, 10)  # 30 rounds of 10-row batches
    kept = _finished(conn, 3, 1)
    pool.configure(retention=Retention(batch_size=10, interval=timedelta(hours=1)))
    pool.start_threads(1)
    wait_for(lambda: _exists(conn, ids) == 0, 30, "every expired job pruned")
    assert _exists(conn, kept) == 3
    pool.finish_threads()


@pytest.mark.slow
def test_several_processes_prune_one_at_a_time(
    service: PostgresService, conn: psycopg.Connection[Any]
) -> None:
    """Four processes contend for the pruning lock; the first to get it deletes every batch,
    the others find nothing left. Each deleted row records the backend that deleted it."""
    _finished(conn, 3000, 10)
    conn.execute(
        """create table prune_trace (pid int not null);
           create function trace_prune() returns trigger language plpgsql as $$
           begin insert into prune_trace values (pg_backend_pid()); return null; end $$;
           create trigger trace_prune after delete on worker.job
               for each row execute function trace_prune();"""
    )
    conn.commit()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH", "")]),
    }
    with psycopg.connect(service.conninfo, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", (PRUNE_LOCK_KEY,))
        procs = [
            subprocess.Popen(
                [sys.executable, PRUNE_APP, service.conninfo, "300"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
            for _ in range(4)
        ]
        outputs: list[list[str]] = [[] for _ in procs]
        contending = [threading.Event() for _ in procs]

        def read(i: int) -> None:
            stdout = procs[i].stdout
            assert stdout is not None
            for line in stdout:
                outputs[i].append(line.strip())
                if line.strip() == "contending":
                    contending[i].set()

        readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(len(procs))]
        for r in readers:
            r.start()
        for i, event in enumerate(contending):
            assert event.wait(60), outputs[i]
        holder.execute("select pg_advisory_unlock(%s)", (PRUNE_LOCK_KEY,))
    for p in procs:
        assert p.wait(120) == 0
    for r in readers:
        r.join(10)
    for p in procs:
        assert p.stdout is not None
        p.stdout.close()
    results = sorted(int(out[-1].split()[1]) for out in outputs)
    assert results == [0, 0, 0, 3000], outputs
    row = conn.execute("select count(*), count(distinct pid) from prune_trace").fetchone()
    assert row == (3000, 1)
