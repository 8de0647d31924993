"""pg-jobqueue behind a real PgBouncer (Debian's pgbouncer) in transaction and session pooling
mode: enqueue, claims, heartbeats, the reaper, conn= transactions, the listener (LISTEN works
in session mode; in transaction mode the listener falls back to polling, or goes direct),
and statement preparation ($JOBQUEUE_PREPARE_THRESHOLD)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from helpers import PgServer, count_jobs, wait_for
from pgbouncer import BINARY, PgBouncer
from psycopg.conninfo import conninfo_to_dict

import jobqueue
from jobworker import Registry, WorkerPool
from jobworker_pg import NotificationListener, PostgresService
from jobworker_pg.cli._progress import QueueDepth
from jobworker_pg.cli._target import Target

pytestmark = pytest.mark.skipif(shutil.which(BINARY) is None, reason="pgbouncer is not installed")

_PREPARE_ERRORS = (psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName)


@pytest.fixture
def bouncer(pg_server: PgServer) -> Iterator[Callable[..., PgBouncer]]:
    started: list[PgBouncer] = []

    def start(mode: str, pool_size: int = 20) -> PgBouncer:
        started.append(PgBouncer(pg_server.admin_url, mode, pool_size))
        return started[-1]

    try:
        yield start
    finally:
        for b in started:
            b.stop()


def _through(b: PgBouncer, db_url: str) -> str:
    return b.url(str(conninfo_to_dict(db_url)["dbname"]))


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_workers_run_jobs_with_heartbeats_through_pgbouncer(
    mode: str, bouncer: Callable[..., PgBouncer], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQUEUE_PREPARE_THRESHOLD", "none")
    url = _through(bouncer(mode), db_url)
    beaten = threading.Event()

    def wait_for_a_heartbeat(job: jobqueue.Job) -> int:
        if job.payload["n"] == 0:  # one job stays until its heartbeat was written (directly checked)
            with psycopg.connect(db_url, autocommit=True) as direct:
                wait_for(
                    lambda: direct.execute(
                        "select worker_alive_at > started_at from worker.job where id = %s", (job.id,)
                    ).fetchone()[0],  # type: ignore[index]
                    timeout=30,
                    what="a heartbeat",
                )
            beaten.set()
        return int(job.payload["n"]) * 2

    registry = Registry()
    registry.register("double", wait_for_a_heartbeat)
    with PostgresService(url, ping_interval=0.5) as service:
        pool = WorkerPool(service, registry)
        pool.configure(heartbeat_interval=0.2, dead_for=1.0, reaper_interval=0.2, prefetch=2)
        pool.start_polling_available_jobs(0.2)
        jobs = service.add_jobs([jobqueue.new_job("double", "bouncer", {"n": n}) for n in range(60)])
        service.add_job(jobqueue.new_job("double", "bouncer", {"n": 100}))
        pool.start_threads(4)
        try:
            assert beaten.wait(30)
            wait_for(lambda: not service.get_all_jobs_to_do(), timeout=60, what="every job ran")
        finally:
            assert pool.finish_threads(30)
        assert [service.get_job(j.id).result for j in jobs] == [n * 2 for n in range(60)]
        assert service.listener.wait_connected(20)  # after its probe
        assert service.listener.listen_works is (mode == "session")


def test_reaper_requeues_a_dead_workers_job_through_transaction_pooling(
    bouncer: Callable[..., PgBouncer], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQUEUE_PREPARE_THRESHOLD", "none")
    url = _through(bouncer("transaction"), db_url)
    with PostgresService(url) as service:
        job = service.add_job(jobqueue.new_job("t", "bouncer", {}, max_retry_count=1))
        (claimed,) = service.claim_jobs(["t"], 1)
        assert claimed.id == job.id
        with psycopg.connect(db_url, autocommit=True) as direct:  # the worker died an hour ago
            direct.execute(
                "update worker.job set worker_alive_at = now() - interval '1 hour' where id = %s", (job.id,)
            )
        # dead_for is short: the reaper skips a server that started less than dead_for ago
        assert service.reap_dead_jobs(timedelta(seconds=1)) == 1
        assert service.get_job(job.id).state == jobqueue.JobState.RETRYING


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_conn_transaction_through_transaction_pooling(
    outcome: str, bouncer: Callable[..., PgBouncer], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQUEUE_PREPARE_THRESHOLD", "none")
    url = _through(bouncer("transaction"), db_url)
    with PostgresService(url) as service, psycopg.connect(url, prepare_threshold=None) as conn:
        conn.execute("create table if not exists orders (id int)")
        conn.execute("insert into orders values (1)")
        service.add_job(jobqueue.new_job("order.ship", "shop", {"order": 1}), conn=conn)
        service.add_jobs([jobqueue.new_job("order.ship", "shop", {"order": n}) for n in range(3)], conn=conn)
        getattr(conn, outcome)()
    assert count_jobs(db_url) == (4 if outcome == "commit" else 0)


def _setter(event: threading.Event) -> Callable[[str | None], None]:
    return lambda job_type: event.set()


def test_listener_falls_back_to_polling_in_transaction_mode_and_listens_in_session_mode(
    bouncer: Callable[..., PgBouncer], db_url: str
) -> None:
    results: dict[str, bool | None] = {}
    for mode in ("transaction", "session"):
        listener = NotificationListener(_through(bouncer(mode), db_url), fallback_poll_interval=0.1)
        woken = threading.Event()
        listener.set_wakeup(_setter(woken))
        try:
            assert listener.wait_connected(20)
            assert woken.wait(10)
            results[mode] = listener.listen_works
        finally:
            listener.stop()
    assert results == {"transaction": False, "session": True}


def test_a_direct_listen_url_keeps_notifications_behind_transaction_pooling(
    bouncer: Callable[..., PgBouncer], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQUEUE_PREPARE_THRESHOLD", "none")
    monkeypatch.setenv("JOBQUEUE_LISTEN_DATABASE_URL", db_url)
    woken = threading.Event()
    with PostgresService(_through(bouncer("transaction"), db_url)) as service:
        service.listener.set_wakeup(lambda job_type: woken.set() if job_type == "via.bouncer" else None)
        assert service.listener.wait_connected(20)
        assert service.listener.listen_works is True
        service.add_job(jobqueue.new_job("via.bouncer", "o", {}))  # added through the pooler
        assert woken.wait(10)


def _hammer(url: str, connect_kwargs: dict[str, Any] | None) -> list[BaseException]:
    """Two threads, each on its own pooled connection, run the same statements 20 times."""
    errors: list[BaseException] = []
    with PostgresService(url, min_size=2, max_size=2, connect_kwargs=connect_kwargs) as service:
        job = service.add_job(jobqueue.new_job("t", "o", {}))
        barrier = threading.Barrier(2)

        def run() -> None:
            try:
                with service._pool.connection() as conn:  # one client connection per thread
                    barrier.wait(10)
                    for _ in range(20):
                        conn.execute("select id from worker.job where id = %s", (job.id,)).fetchone()
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    return errors


def test_prepared_statements_clash_behind_transaction_pooling_unless_switched_off(
    bouncer: Callable[..., PgBouncer], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One server connection shared by two clients: what psycopg prepares for one is
    # there (or missing) for the other.
    url = _through(bouncer("transaction", pool_size=1), db_url)
    monkeypatch.delenv("JOBQUEUE_PREPARE_THRESHOLD", raising=False)
    clashes = _hammer(url, None)
    assert clashes, "two clients on one server connection, both preparing, did not clash"
    assert all(isinstance(e, _PREPARE_ERRORS) for e in clashes), clashes
    monkeypatch.setenv("JOBQUEUE_PREPARE_THRESHOLD", "none")
    assert _hammer(url, None) == []


def test_the_worker_statements_prepare_unless_prepare_false_behind_transaction_pooling(
    bouncer: Callable[..., PgBouncer], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's hot statements (here the claim) are prepared at first use by default, which clashes
    when two services share one server connection; ``PostgresService(prepare=False)`` alone
    (no environment variable) prepares nothing."""
    url = _through(bouncer("transaction", pool_size=1), db_url)
    monkeypatch.delenv("JOBQUEUE_PREPARE_THRESHOLD", raising=False)

    def claims(prepare: bool | None) -> list[BaseException]:
        errors: list[BaseException] = []
        services = [PostgresService(url, min_size=1, max_size=1, prepare=prepare) for _ in range(2)]
        barrier = threading.Barrier(2)

        def run(service: PostgresService) -> None:
            barrier.wait(10)
            for _ in range(20):
                try:
                    service.claim_jobs(["nothing.here"], 1)
                except jobqueue.DatabaseError as exc:
                    errors.append(exc.__cause__ or exc)

        threads = [threading.Thread(target=run, args=(s,)) for s in services]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        finally:
            for service in services:
                service.close()
        return errors

    clashes = claims(None)  # the default: prepared
    assert clashes, "two services preparing on one server connection did not clash"
    assert all(isinstance(e, _PREPARE_ERRORS) for e in clashes), clashes
    assert claims(False) == []


def test_the_worker_summary_query_follows_the_prepare_switch(
    bouncer: Callable[..., PgBouncer], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `jobqueue worker` counts its queue on a connection of its own, over and over: with
    # two of them on one server connection, statements psycopg prepared would clash.
    monkeypatch.setenv("JOBQUEUE_PREPARE_THRESHOLD", "none")
    target = Target(_through(bouncer("transaction", pool_size=1), db_url), "--database-url")
    depths = [QueueDepth(target, 0, ["t"]), QueueDepth(target, 0, ["t"])]
    try:
        counts = [depth.get() for _ in range(10) for depth in depths]
    finally:
        for depth in depths:
            depth.close()
    assert counts == [(0, 0)] * 20
