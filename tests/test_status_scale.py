"""get_status costs O(unfinished jobs): exact unfinished counts from the partial indexes,
finished counts estimated from a sample once the table is big (Status.estimated)."""

from __future__ import annotations

from typing import Any

import psycopg

import jobqueue
from jobworker_pg import PostgresService
from jobworker_pg._queries import q
from jobworker_pg._service import STATUS_EXACT_ROWS


def _add_finished(conn: psycopg.Connection[Any], n: int, job_type: str, *, failed: bool = False) -> None:
    conn.execute(
        """insert into worker.job (id, type, payload, origin, started_at, worker_alive_at, stopped_at,
                                   attempt, error_msg)
           select gen_random_uuid(), %s, to_jsonb(g), 'o', now(), now(), now(), 1, %s
           from generate_series(1, %s) g""",
        (job_type, "boom" if failed else None, n),
    )


def test_small_tables_are_counted_exactly(service: PostgresService, conn: psycopg.Connection[Any]) -> None:
    _add_finished(conn, 30, "a")
    _add_finished(conn, 5, "a", failed=True)
    conn.commit()
    service.add_jobs([jobqueue.new_job("a", "o", i) for i in range(3)])
    status = service.get_status()
    assert not status.estimated
    assert (status.pending, status.succeeded, status.failed) == (3, 30, 5)
    assert status.by_type["a"].succeeded == 30


def test_big_tables_estimate_finished_counts_and_count_unfinished_exactly(
    service: PostgresService, conn: psycopg.Connection[Any]
) -> None:
    finished, failed = STATUS_EXACT_ROWS * 2, STATUS_EXACT_ROWS // 2
    _add_finished(conn, finished, "big")
    _add_finished(conn, failed, "big", failed=True)
    conn.commit()
    conn.autocommit = True
    conn.execute("analyze worker.job")
    service.add_jobs([jobqueue.new_job("big", "o", i) for i in range(7)])
    service.add_jobs([jobqueue.new_job("other", "o", i) for i in range(2)])
    assert len(service.claim_jobs(["other"], 1)) == 1
    status = service.get_status()
    assert status.estimated
    assert (status.pending, status.running) == (8, 1)  # exact
    assert status.by_type["big"].pending == 7 and status.by_type["other"].running == 1
    assert abs(status.succeeded - finished) < finished * 0.25, status.succeeded
    assert abs(status.failed - failed) < failed * 0.35, status.failed


def test_unfinished_counts_read_only_the_partial_indexes(conn: psycopg.Connection[Any]) -> None:
    _add_finished(conn, STATUS_EXACT_ROWS, "big")
    conn.execute(
        "insert into worker.job (id, type, payload, origin) select gen_random_uuid(), 'big', '1', 'o'"
        " from generate_series(1, 20)"
    )
    conn.commit()
    conn.autocommit = True
    conn.execute("analyze worker.job")
    plan = "\n".join(r[0] for r in conn.execute("explain " + q("status_unfinished")))
    assert "Seq Scan" not in plan, plan
    assert "job_queue_available_idx" in plan and "job_running_idx" in plan, plan
