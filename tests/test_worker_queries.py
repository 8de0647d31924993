"""The worker's side of PostgresService: claims, claim tokens, heartbeats, the reaper, schema."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from helpers import wait_for

import jobqueue
from jobqueue import JobDesc, JobState
from jobworker._database import Outcome, OutcomeKind
from jobworker_pg import PostgresService, install_schema


def test_claim_takes_highest_priority_then_oldest(service: PostgresService) -> None:
    a = service.add_job(jobqueue.new_job("t", "o", "a", priority=1))
    b = service.add_job(jobqueue.new_job("t", "o", "b", priority=5))
    c = service.add_job(jobqueue.new_job("t", "o", "c", priority=1))
    order = [service.claim_jobs(["t"], 1)[0].id for _ in range(3)]
    assert order == [b.id, a.id, c.id]
    assert service.claim_jobs(["t"], 1) == []


def test_claim_returns_a_batch_in_claim_order(service: PostgresService) -> None:
    jobs = service.add_jobs([jobqueue.new_job("t", "o", i, priority=i % 3) for i in range(30)])
    claimed = service.claim_jobs(["t"], 30)
    expected = sorted(jobs, key=lambda j: (-j.priority, j.id))
    assert [j.id for j in claimed] == [j.id for j in expected]
    assert len({j.claim_token for j in claimed}) == 1  # one token per claim; (id, token) is unique
    assert service.claim_jobs(["t"], 1) == []
    assert all(j.attempt == 1 and j.started_at is not None for j in claimed)


def test_a_claimed_job_is_the_stored_row(service: PostgresService, db_url: str) -> None:
    """claim_jobs returns fewer columns and fills in what the claim implies: check it against
    a fresh read, for a first claim and for a retry that carries an earlier error."""
    added = service.add_job(jobqueue.new_job("t", "o", {"k": [1, 2]}, priority=3, max_retry_count=2))
    (first,) = service.claim_jobs(["t"], 1)
    assert first == service.get_job(added.id)
    assert list(first.__dict__) == list(jobqueue.Job.model_fields)  # built like any other Job
    assert first.model_fields_set == set(jobqueue.Job.model_fields)
    assert first.claim_token is not None
    retry = Outcome(
        first.id,
        first.claim_token,
        OutcomeKind.RETRY,
        first.attempt,
        error_msg="boom",
        error_type="ValueError",
        error_data_json='{"type": "ValueError", "message": "boom"}',
        retry_delay=timedelta(0),
    )
    assert service.save_outcomes([retry]) == {first.id}
    (second,) = service.claim_jobs(["t"], 1)
    stored = service.get_job(added.id)
    assert second == stored
    assert second.attempt == 2 and second.error_msg == "boom" and len(second.errors) == 1
    assert second.worker_alive_at == second.updated_at == second.started_at is not None


def test_claim_only_takes_the_requested_types(service: PostgresService) -> None:
    service.add_job(jobqueue.new_job("other", "o", None))
    mine = service.add_job(jobqueue.new_job("mine", "o", None))
    assert [j.id for j in service.claim_jobs(["mine", "absent"], 10)] == [mine.id]
    assert service.claim_jobs([], 10) == []


def test_claim_honours_start_at_by_the_database_clock(service: PostgresService, db_url: str) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", None, start_at=datetime.now(UTC) + timedelta(hours=1)))
    assert service.claim_jobs(["t"], 1) == []
    wait = service.seconds_until_next_job(["t"])
    assert wait is not None and 3500 < wait <= 3600
    with psycopg.connect(db_url) as conn:
        conn.execute("update worker.job set start_at = now() - interval '1 s' where id = %s", (job.id,))
    assert [j.id for j in service.claim_jobs(["t"], 1)] == [job.id]
    assert service.seconds_until_next_job(["t"]) is None


def test_concurrent_claimers_never_share_a_job(service: PostgresService) -> None:
    service.add_jobs([jobqueue.new_job("t", "o", i) for i in range(400)])
    seen: list[Any] = []
    lock = threading.Lock()

    def claimer() -> None:
        while batch := service.claim_jobs(["t"], 7):
            with lock:
                seen.extend(j.id for j in batch)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(seen) == 400 and len(set(seen)) == 400


def test_outcome_with_a_stale_claim_token_is_rejected(service: PostgresService) -> None:
    service.add_job(jobqueue.new_job("t", "o", None, max_retry_count=2))
    (first,) = service.claim_jobs(["t"], 1)
    assert first.claim_token is not None
    retry = Outcome(
        first.id, first.claim_token, OutcomeKind.RETRY, 1, error_msg="x", retry_delay=timedelta(0)
    )
    assert service.save_outcomes([retry]) == {first.id}
    (second,) = service.claim_jobs(["t"], 1)
    assert second.id == first.id and second.attempt == 2 and second.claim_token != first.claim_token
    late = Outcome(first.id, first.claim_token, OutcomeKind.SUCCEEDED, 1, result_json='"late"')
    assert service.save_outcomes([late]) == set()
    assert service.heartbeat([(first.id, first.claim_token)]) == set()
    assert second.claim_token is not None
    assert service.heartbeat([(second.id, second.claim_token)]) == {second.id}
    job = service.get_job(first.id)
    assert job.state is JobState.RUNNING and job.result is None


def test_outcomes_store_result_error_and_history(service: PostgresService) -> None:
    service.add_jobs([jobqueue.new_job("t", "o", i, max_retry_count=1) for i in range(3)])
    a, b, c = service.claim_jobs(["t"], 3)
    assert a.claim_token and b.claim_token and c.claim_token
    applied = service.save_outcomes(
        [
            Outcome(a.id, a.claim_token, OutcomeKind.SUCCEEDED, 1, result_json='{"ok":true}'),
            Outcome(
                b.id,
                b.claim_token,
                OutcomeKind.FAILED,
                1,
                error_msg="bad",
                error_type="ValueError",
                error_data_json='{"type":"ValueError"}',
            ),
            Outcome(
                c.id,
                c.claim_token,
                OutcomeKind.RETRY,
                1,
                error_msg="again",
                error_type="E",
                retry_delay=timedelta(seconds=30),
            ),
        ]
    )
    assert applied == {a.id, b.id, c.id}
    got_a, got_b, got_c = (service.get_job(j.id) for j in (a, b, c))
    assert got_a.state is JobState.SUCCEEDED and got_a.result == {"ok": True}
    assert got_b.state is JobState.FAILED and got_b.error_msg == "bad"
    assert got_b.error_data == {"type": "ValueError"}
    assert [(e.attempt, e.message, e.type) for e in got_b.errors] == [(1, "bad", "ValueError")]
    assert got_c.state is JobState.RETRYING and got_c.current_retry_count == 1
    assert got_c.start_at is not None and got_c.started_at is None and got_c.claim_token is None
    wait = service.seconds_until_next_job(["t"])
    assert wait is not None and 20 < wait <= 30


@pytest.fixture
def reapable(db_url: str) -> None:
    """The reaper leaves alone a server up for less than dead_for (nobody could send heartbeats
    yet); these tests reap with dead_for = 1 s, so wait until the server has been up longer."""

    def up_long_enough() -> bool:
        with psycopg.connect(db_url) as conn:
            row = conn.execute("select pg_postmaster_start_time() < now() - interval '1.5 s'").fetchone()
        return bool(row and row[0])

    wait_for(up_long_enough, 10, "the server to be up for 1.5 s")


def test_reaper_requeues_a_job_whose_heartbeat_stopped(
    service: PostgresService, db_url: str, reapable: None
) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", None, max_retry_count=1))
    (claimed,) = service.claim_jobs(["t"], 1)
    assert service.reap_dead_jobs(timedelta(seconds=1)) == 0
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "update worker.job set worker_alive_at = now() - interval '2 min' where id = %s", (job.id,)
        )
    assert service.reap_dead_jobs(timedelta(seconds=1)) == 1
    requeued = service.get_job(job.id)
    assert requeued.state is JobState.RETRYING and "worker lost" in (requeued.error_msg or "")
    assert claimed.claim_token is not None
    late = Outcome(job.id, claimed.claim_token, OutcomeKind.SUCCEEDED, 1, result_json="1")
    assert service.save_outcomes([late]) == set()
    # Second attempt also loses its worker: no attempt left, so it ends failed.
    service.claim_jobs(["t"], 1)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "update worker.job set worker_alive_at = now() - interval '2 min' where id = %s", (job.id,)
        )
    assert service.reap_dead_jobs(1) == 1
    failed = service.get_job(job.id)
    assert failed.state is JobState.FAILED and failed.error_msg is not None
    assert failed.error_msg.startswith("worker lost")
    assert [e.attempt for e in failed.errors] == [1, 2]


def test_reaped_bundle_job_moves_the_bundle_counter_once(
    service: PostgresService, db_url: str, reapable: None
) -> None:
    bundle = service.add_job_bundle(jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload=1)]))
    (claimed,) = service.claim_jobs(["t"], 1)
    with psycopg.connect(db_url) as conn:
        conn.execute("update worker.job set worker_alive_at = now() - interval '2 min'")
    assert service.reap_dead_jobs(1) == 1
    assert claimed.claim_token is not None
    late = Outcome(claimed.id, claimed.claim_token, OutcomeKind.SUCCEEDED, 1, result_json="1")
    assert service.save_outcomes([late]) == set()
    got = service.get_job_bundle(bundle.id)
    assert got.num_jobs_stopped == 1 and got.jobs[0].state is JobState.FAILED


def test_bundle_with_a_declared_handler_enqueues_its_completion_job(service: PostgresService) -> None:
    service.declare_bundle_handlers({"report": 3})
    service.declare_bundle_handlers({"report": 3})  # idempotent
    bundle = service.add_job_bundle(
        jobqueue.new_job_bundle("report", "cron", [JobDesc(type="p", payload=i) for i in range(2)])
    )
    for job in service.claim_jobs(["p"], 2):
        assert job.claim_token is not None
        service.save_outcomes([Outcome(job.id, job.claim_token, OutcomeKind.SUCCEEDED, 1, result_json="1")])
    (completion,) = service.claim_jobs(["jobqueue.bundle:report"], 5)
    assert {k: completion.payload[k] for k in ("bundle_id", "bundle_type")} == {
        "bundle_id": str(bundle.id),
        "bundle_type": "report",
    }
    # The bundle as it stopped travels with the job (the bundle row may be gone when it runs).
    stopped = jobqueue.JobBundle.model_validate(completion.payload["bundle"])
    assert (stopped.id, stopped.num_jobs, stopped.num_jobs_stopped) == (bundle.id, 2, 2)
    assert [j.result for j in stopped.jobs] == [1, 1]
    assert completion.origin == "cron"
    assert completion.max_retry_count == 3
    assert completion.id.version == 7  # time-ordered, like every other job id
    # Other bundle types get no completion job.
    service.add_job_bundle(jobqueue.new_job_bundle("plain", "o", [JobDesc(type="q", payload=1)]))
    (q,) = service.claim_jobs(["q"], 1)
    assert q.claim_token is not None
    service.save_outcomes([Outcome(q.id, q.claim_token, OutcomeKind.SUCCEEDED, 1, result_json="1")])
    assert service.claim_jobs(["jobqueue.bundle:plain"], 5) == []


def test_install_schema_is_idempotent_and_safe_concurrently(pg_server: Any) -> None:
    import uuid

    name = f"jobqueue_install_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    try:
        errors: list[BaseException] = []

        def install() -> None:
            try:
                install_schema(url)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=install) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        install_schema(url)
        with psycopg.connect(url) as conn:
            install_schema(conn)  # on an open connection, in its transaction
            conn.commit()
            row = conn.execute(
                "select count(*) from pg_trigger where not tgisinternal"
                " and tgrelid in ('worker.job'::regclass, 'worker.job_bundle'::regclass)"
            ).fetchone()
        assert row == (4,)
    finally:
        pg_server.drop_database(name)


def test_install_schema_without_a_url_says_where_it_looked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBQUEUE_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(jobqueue.InvalidJobError, match="DATABASE_URL"):
        install_schema()


def test_a_claim_whose_reply_was_lost_is_taken_back_by_the_next_claim(
    service: PostgresService, db_url: str
) -> None:
    import uuid

    jobs = service.add_jobs([jobqueue.new_job("t", "o", i) for i in range(3)])
    # What a claim does when the server commits it and the connection breaks before the reply.
    token = uuid.uuid4()
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "update worker.job set started_at = now(), worker_alive_at = now(), attempt = attempt + 1,"
            " claim_token = %s where id = any(%s)",
            (token, [jobs[0].id, jobs[1].id]),
        )
    service._unconfirmed_claims.add(token)  # claim_jobs records it on a broken connection
    claimed = service.claim_jobs(["t"], 3)
    assert [j.id for j in claimed] == [jobs[0].id, jobs[1].id, jobs[2].id]
    assert [j.attempt for j in claimed] == [1, 1, 1]  # taken back, not claimed a second time
    assert claimed[0].claim_token == token and claimed[2].claim_token != token
    assert service._unconfirmed_claims == set()
    assert service.claim_jobs(["t"], 3) == []


def test_taken_back_claims_never_exceed_the_limit(service: PostgresService, db_url: str) -> None:
    import uuid

    jobs = service.add_jobs([jobqueue.new_job("t", "o", i) for i in range(3)])
    token = uuid.uuid4()  # a lost claim of all three jobs
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "update worker.job set started_at = now(), worker_alive_at = now(), attempt = attempt + 1,"
            " claim_token = %s",
            (token,),
        )
    service._unconfirmed_claims.add(token)
    claimed = service.claim_jobs(["t"], 1)
    assert len(claimed) == 1  # no more than asked for: the pool has one free place
    rest = [service.get_job(j.id) for j in jobs if j.id != claimed[0].id]
    assert [(j.started_at, j.attempt) for j in rest] == [(None, 0), (None, 0)]  # given back uncounted
    assert len(service.claim_jobs(["t"], 3)) == 2


def test_a_claim_that_fails_on_a_broken_connection_is_remembered(
    service: PostgresService, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.add_job(jobqueue.new_job("t", "o", None))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(psycopg.Connection, "execute", broken)
    with pytest.raises(jobqueue.DatabaseError):
        service.claim_jobs(["t"], 1)
    monkeypatch.undo()
    assert len(service._unconfirmed_claims) == 1
    assert len(service.claim_jobs(["t"], 1)) == 1
    assert service._unconfirmed_claims == set()


def _rows_compared(plan: dict[str, Any]) -> int:
    """Rows a plan read and threw away (filters and join filters), over all its nodes."""
    own = int(plan.get("Rows Removed by Filter", 0)) + int(plan.get("Rows Removed by Join Filter", 0))
    return own + sum(_rows_compared(child) for child in plan.get("Plans", []))


def _job_scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan nodes that scan worker.job as j (the table the statement updates)."""
    scans_j = plan.get("Relation Name") == "job" and plan.get("Alias") == "j"
    own = [plan] if scans_j and "Scan" in plan["Node Type"] else []
    return own + [node for child in plan.get("Plans", []) for node in _job_scans(child)]


def test_outcome_writes_stay_linear_with_stale_statistics(service: PostgresService, db_url: str) -> None:
    """Statistics taken while nothing ran once made the planner expect one running job and
    compare every outcome with every running job (quadratic; 330 ms for 500 outcomes)."""
    from jobworker_pg._queries import q

    service.add_jobs([jobqueue.new_job("t", "o", i) for i in range(3000)])
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("analyze worker.job")  # every job waiting: started_at and stopped_at all null
    claimed = service.claim_jobs(["t"], 2000)
    done = sorted(claimed[:500], key=lambda j: j.id)
    n = len(done)
    params: dict[str, Any] = {
        "ids": [j.id for j in done],
        "tokens": [j.claim_token for j in done],
        "kinds": ["succeeded"] * n,
        "results": ["null"] * n,
        "error_msgs": [None] * n,
        "error_types": [None] * n,
        "error_datas": [None] * n,
        "retry_delays": [0.0] * n,
        "lock_bundles": False,
    }
    with psycopg.connect(db_url) as conn:
        for query, query_params in (
            (q("save_outcomes"), params),
            (q("heartbeat"), {"ids": params["ids"], "tokens": params["tokens"]}),
            (q("release_claims"), {"ids": params["ids"], "tokens": params["tokens"]}),
        ):
            for mode in ("force_custom_plan", "force_generic_plan"):
                conn.execute(f"set plan_cache_mode = {mode}")
                row = conn.execute(
                    "explain (analyze, format json) " + query, query_params, prepare=True
                ).fetchone()
                assert row is not None
                plan = row[0][0]["Plan"]
                # The planner must not expect a handful of rows from worker.job (the state checks
                # as scan filters made it expect one, and then loop over every running job).
                for scan in _job_scans(plan):
                    assert scan["Plan Rows"] >= n or scan.get("Index Name") == "job_pkey", scan
                compared = _rows_compared(plan)
                # Linear: at most a scan of the table (3000 rows) and the outcomes, not 500 x 2000.
                assert compared <= 3000 + 2 * n, (query.split("\n")[0], mode, compared)
                conn.rollback()
