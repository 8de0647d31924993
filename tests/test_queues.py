"""Queues in one process: the new job fields, queue rules in the claim, queue plans, the migration.

The cluster-wide guarantees with several worker processes are in test_queue_processes.py.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from helpers import PgServer, wait_for

import jobqueue
import jobworker
from jobqueue import NO_LIMIT, InvalidJobError, JobDesc, RateLimit
from jobworker import ClaimedJobs, WorkerPool
from jobworker._queue_plan import QueuePlan
from jobworker_pg import PostgresService
from jobworker_pg._migrate import migrate
from jobworker_pg._queues import BUSY_RECHECK_SECONDS, PAUSED_RECHECK_SECONDS

# --- the job's new fields ------------------------------------------------------------------


def _job(i: int = 0, **kw: Any) -> jobqueue.Job:
    return jobqueue.new_job("t", "test", {"i": i}, **kw)


@pytest.mark.parametrize("count", [1, 5, 150])  # insert_job, insert_jobs, COPY
def test_queue_meta_timeout_and_key_are_stored_and_read_back(service: PostgresService, count: int) -> None:
    jobs = [
        _job(i, queue="critical", meta={"trace": f"t{i}", "n": [1, 2]}, timeout=2.5, concurrency_key=f"c{i}")
        for i in range(count)
    ]
    if count == 1:
        service.add_job(jobs[0])
    else:
        service.add_jobs(jobs)
    stored = {j.id: j for j in service.get_all_jobs()}
    for job in jobs:
        got = stored[job.id]
        assert (got.queue, got.meta, got.timeout, got.concurrency_key) == (
            "critical",
            job.meta,
            timedelta(seconds=2.5),
            job.concurrency_key,
        )


def test_a_job_without_a_queue_is_in_the_default_queue(service: PostgresService) -> None:
    job = service.add_job(_job())
    assert job.queue == jobqueue.DEFAULT_QUEUE == "default"
    got = service.get_job(job.id)
    assert (got.queue, got.meta, got.timeout, got.concurrency_key) == ("default", None, None, None)


def test_a_row_inserted_without_the_new_columns_lands_in_the_default_queue(
    service: PostgresService, db_url: str
) -> None:
    # What a go-jobqueue process inserts: only its own columns.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "insert into worker.job (id, type, payload, origin) values (gen_random_uuid(), 't', '1', 'go')"
        )
    (job,) = service.get_all_jobs()
    assert job.queue == "default"
    assert [j.origin for j in service.claim_jobs(["t"], 5)] == ["go"]


def test_bundle_jobs_take_the_bundles_queue_unless_their_desc_names_one(service: PostgresService) -> None:
    bundle = jobqueue.new_job_bundle(
        "b",
        "test",
        [JobDesc(type="t", payload=1), JobDesc(type="t", payload=2, queue="other", meta={"k": 1}, timeout=3)],
        queue="bulk",
    )
    service.add_job_bundle(bundle)
    jobs = service.get_job_bundle(bundle.id).jobs
    assert [(j.queue, j.meta, j.timeout) for j in jobs] == [
        ("bulk", None, None),
        ("other", {"k": 1}, timedelta(seconds=3)),
    ]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"queue": ""}, "queue must not be empty"),
        ({"queue": "x" * 101}, "queue is 101 characters long"),
        ({"queue": 3}, "queue must be a str"),
        ({"meta": [1]}, "meta must be a dict"),
        ({"meta": {1: "a"}}, "meta keys must be str"),
        ({"meta": {"a": object()}}, "meta"),
        ({"timeout": 0}, "timeout must be positive"),
        ({"timeout": "5"}, "timeout must be a timedelta"),
        ({"concurrency_key": ""}, "concurrency_key must be 1 to 200"),
        ({"concurrency_key": 5}, "concurrency_key must be a str"),
    ],
)
def test_bad_queue_fields_are_refused_by_new_job(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        _job(**kw)


def test_a_queue_changed_after_new_job_is_checked_again_by_add(service: PostgresService) -> None:
    job = _job()
    job.queue = ""
    with pytest.raises(InvalidJobError, match="queue must not be empty"):
        service.add_job(job)
    assert service.get_all_jobs() == []


# --- claims by queue and under rules ---------------------------------------------------------


def test_a_claim_takes_only_jobs_of_its_queue(service: PostgresService) -> None:
    service.add_jobs([_job(1, queue="a"), _job(2, queue="b"), _job(3)])
    assert [j.payload["i"] for j in service.claim_jobs(["t"], 10, queue="a")] == [1]
    assert [j.payload["i"] for j in service.claim_jobs(["t"], 10)] == [3]
    (b,) = service.claim_jobs(["t"], 10, queue="b")
    assert b.queue == "b" and b.payload["i"] == 2


def test_configure_queue_stores_rules_and_none_keeps_them(current: PostgresService) -> None:
    info = jobqueue.configure_queue("q", concurrency=3, rate_limit=RateLimit(50, per=timedelta(seconds=2)))
    assert (info.concurrency, info.rate_limit, info.paused) == (3, RateLimit(50, timedelta(seconds=2)), False)
    info = jobqueue.configure_queue("q", per_key_concurrency=1, paused=True)
    assert (info.concurrency, info.per_key_concurrency, info.paused) == (3, 1, True)
    info = jobqueue.configure_queue("q", concurrency=NO_LIMIT, rate_limit=NO_LIMIT)
    assert (info.concurrency, info.rate_limit, info.per_key_concurrency) == (None, None, 1)
    assert jobqueue.resume_queue("q").paused is False
    assert jobqueue.get_queue("q") == info.__class__("q", per_key_concurrency=1)
    assert jobqueue.get_queue("never") == jobqueue.QueueInfo("never")


def test_list_queues_shows_rules_and_counts(current: PostgresService) -> None:
    current.add_jobs([_job(1, queue="a"), _job(2, queue="a"), _job(3)])
    current.claim_jobs(["t"], 1, queue="a")
    jobqueue.pause_queue("idle")
    queues = {q.name: q for q in jobqueue.list_queues()}
    assert (queues["a"].waiting, queues["a"].running) == (1, 1)
    assert (queues["default"].waiting, queues["default"].running) == (1, 0)
    assert queues["idle"].paused and queues["idle"].waiting == 0


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a positive int"),
        ({"concurrency": True}, "concurrency must be a positive int"),
        ({"per_key_concurrency": -1}, "per_key_concurrency must be a positive int"),
        ({"rate_limit": 5}, "rate_limit must be a jobqueue.RateLimit"),
        ({"paused": "yes"}, "paused must be a bool"),
    ],
)
def test_configure_queue_refuses_bad_values_before_any_sql(
    current: PostgresService, kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidJobError, match=message):
        jobqueue.configure_queue("q", **kw)
    assert jobqueue.list_queues() == []


def test_rate_limit_checks_its_values() -> None:
    with pytest.raises(InvalidJobError, match="count must be a positive int"):
        RateLimit(0)
    with pytest.raises(InvalidJobError, match="per must be a positive"):
        RateLimit(5, per=timedelta(0))
    assert RateLimit(5, per=2).per == timedelta(seconds=2)  # type: ignore[arg-type]  # seconds are accepted


def test_a_concurrency_limit_caps_running_jobs_across_claims(service: PostgresService) -> None:
    service.configure_queue("q", concurrency=2)
    service.add_jobs([_job(i, queue="q") for i in range(5)])
    first = service.claim_jobs(["t"], 10, queue="q")
    assert len(first) == 2
    assert isinstance(first, ClaimedJobs) and first.retry_in is not None
    assert BUSY_RECHECK_SECONDS * 0.5 <= first.retry_in <= BUSY_RECHECK_SECONDS * 1.5
    assert service.claim_jobs(["t"], 10, queue="q") == []
    jobworker_outcome_succeeded(service, first[0])
    assert len(service.claim_jobs(["t"], 10, queue="q")) == 1


def jobworker_outcome_succeeded(service: PostgresService, job: jobqueue.Job) -> None:
    assert job.claim_token is not None
    outcome = jobworker.Outcome(job.id, job.claim_token, jobworker.OutcomeKind.SUCCEEDED, job.attempt, "1")
    assert service.save_outcomes([outcome]) == {job.id}


def test_a_per_key_limit_passes_over_keys_at_their_limit(service: PostgresService) -> None:
    service.configure_queue("q", per_key_concurrency=1)
    keys = ["a", "a", "a", "b", "b", None, None]
    service.add_jobs([_job(i, queue="q", concurrency_key=k) for i, k in enumerate(keys)])
    claimed = service.claim_jobs(["t"], 10, queue="q")
    assert sorted(Counter(j.concurrency_key or "-" for j in claimed).items()) == [
        ("-", 2),
        ("a", 1),
        ("b", 1),
    ]
    assert service.claim_jobs(["t"], 10, queue="q") == []
    a = next(j for j in claimed if j.concurrency_key == "a")
    jobworker_outcome_succeeded(service, a)
    assert [j.concurrency_key for j in service.claim_jobs(["t"], 10, queue="q")] == ["a"]


def test_a_rate_limit_allows_count_starts_per_window_and_says_when_more(service: PostgresService) -> None:
    service.configure_queue("q", rate_limit=RateLimit(3, per=timedelta(seconds=60)))
    service.add_jobs([_job(i, queue="q") for i in range(10)])
    first = service.claim_jobs(["t"], 2, queue="q")
    second = service.claim_jobs(["t"], 10, queue="q")
    assert (len(first), len(second)) == (2, 1)
    assert isinstance(second, ClaimedJobs) and second.retry_in is not None and 55 < second.retry_in <= 60
    assert service.claim_jobs(["t"], 10, queue="q") == []


def test_a_paused_queue_gives_nothing_and_resumes(service: PostgresService) -> None:
    service.add_jobs([_job(i, queue="q") for i in range(3)])
    service.configure_queue("q", paused=True)
    held = service.claim_jobs(["t"], 10, queue="q")
    assert held == [] and isinstance(held, ClaimedJobs) and held.retry_in == PAUSED_RECHECK_SECONDS
    service.configure_queue("q", paused=False)
    assert len(service.claim_jobs(["t"], 10, queue="q")) == 3


def test_a_worker_that_has_not_seen_the_pause_yet_claims_nothing(
    service: PostgresService, db_url: str
) -> None:
    service.add_jobs([_job(i, queue="q") for i in range(3)])
    assert service.claim_jobs(["t"], 1, queue="q") != []  # its list of queues with rules is now fresh
    with PostgresService(db_url) as other:
        other.configure_queue("q", paused=True)
    # The claim statement itself checks that the queue has no rules.
    assert service.claim_jobs(["t"], 10, queue="q") == []


def test_a_queue_whose_rules_are_removed_is_claimed_again(service: PostgresService) -> None:
    service.add_jobs([_job(i, queue="q") for i in range(4)])
    service.configure_queue("q", concurrency=1)
    assert len(service.claim_jobs(["t"], 10, queue="q")) == 1
    service.configure_queue("q", concurrency=NO_LIMIT)
    assert len(service.claim_jobs(["t"], 10, queue="q")) == 3


def test_concurrent_claimers_never_exceed_the_concurrency(service: PostgresService, db_url: str) -> None:
    service.configure_queue("q", concurrency=5)
    service.add_jobs([_job(i, queue="q") for i in range(200)])
    services = [PostgresService(db_url) for _ in range(8)]
    claimed: list[int] = []
    start = threading.Barrier(len(services))

    def claim(svc: PostgresService) -> None:
        start.wait()
        for _ in range(10):
            claimed.append(len(svc.claim_jobs(["t"], 3, queue="q")))

    threads = [threading.Thread(target=claim, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in services:
        s.close()
    assert sum(claimed) == 5
    assert len([j for j in service.get_all_jobs() if j.started]) == 5


# --- meta and timeout in the worker -------------------------------------------------------------


def test_meta_reaches_hooks_and_a_jobs_timeout_overrides_its_types(service: PostgresService) -> None:
    pool = WorkerPool(service)
    pool.registry.register("slow", lambda job: threading.Event().wait(job.payload), timeout=60)
    seen: list[Any] = []
    pool.registry.add_before_job_hook(lambda job: seen.append(job.meta))
    pool.start_threads(2)
    try:
        fast = service.add_job(jobqueue.new_job("slow", "t", 30, timeout=0.3, meta={"who": "me"}))
        wait_for(lambda: service.get_job(fast.id).has_error, 30, "the job's own timeout")
    finally:
        pool.stop_threads()
    assert "ran longer than its timeout of 0:00:00.300000" in (service.get_job(fast.id).error_msg or "")
    assert seen == [{"who": "me"}]


# --- queue plans ------------------------------------------------------------------------------


def test_weights_deal_places_in_their_ratio_over_many_claims() -> None:
    plan = QueuePlan({"critical": 10, "default": 1})
    totals: Counter[str] = Counter()
    for places in [1, 3, 8, 1, 1, 2] * 50:
        for queue, n in plan.deal(places):
            totals[queue] += n
    assert totals["critical"] + totals["default"] == 16 * 50
    assert totals["critical"] / totals["default"] == pytest.approx(10, rel=0.05)


def test_strict_order_gives_all_places_to_the_first_queue() -> None:
    assert QueuePlan(["a", "b"]).deal(4) == [("a", 4), ("b", 0)]
    assert QueuePlan(None).queues == ["default"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("default", "must be a list of queue names"),
        ([], "at least one queue"),
        (["a", "a"], "names a queue twice"),
        ({"a": 0}, "must be a positive int"),
        ({"": 1}, "queue must not be empty"),
    ],
)
def test_bad_queue_specs_are_refused(spec: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QueuePlan(spec)


def test_start_threads_refuses_bad_queues_without_starting(service: PostgresService) -> None:
    pool = WorkerPool(service)
    pool.registry.register("t", lambda job: None)
    with pytest.raises(ValueError, match="at least one queue"):
        pool.start_threads(2, queues=[])
    assert not pool.running


def test_a_pool_serves_its_queues_in_strict_order_and_the_next_when_the_first_is_empty(
    service: PostgresService,
) -> None:
    ran: list[str] = []
    pool = WorkerPool(service)
    pool.registry.register("t", lambda job: ran.append(job.queue))
    service.add_jobs([_job(i, queue="low") for i in range(5)] + [_job(i, queue="high") for i in range(5)])
    service.add_jobs([_job(i, queue="ignored") for i in range(3)])
    pool.start_threads(1, queues=["high", "low"])
    try:
        wait_for(lambda: len(ran) == 10, 30, "both queues drained")
    finally:
        pool.finish_threads(30)
    assert ran == ["high"] * 5 + ["low"] * 5
    assert {j.queue for j in service.get_all_jobs() if not j.stopped} == {"ignored"}


# --- the migration ------------------------------------------------------------------------------


def test_upgrade_from_the_first_revision_keeps_jobs_in_the_default_queue(pg_server: PgServer) -> None:
    import uuid

    name = f"jobqueue_q_{uuid.uuid4().hex[:10]}"
    url = pg_server.create_database(name)
    try:
        migrate(url, "jobqueue_0001")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "insert into worker.job (id, type, payload, origin)"
                " select gen_random_uuid(), 't', to_jsonb(i), 'old' from generate_series(1, 20) i"
            )
        migrate(url)
        with PostgresService(url) as svc:
            jobs = svc.get_all_jobs()
            assert len(jobs) == 20 and {j.queue for j in jobs} == {"default"}
            assert len(svc.claim_jobs(["t"], 50)) == 20
            svc.configure_queue("default", concurrency=1)  # the new table is there
    finally:
        pg_server.drop_database(name)


def test_install_schema_upgrades_a_database_installed_before_queues(pg_server: PgServer) -> None:
    import uuid

    from jobworker_pg import install_schema
    from jobworker_pg._migrate import catalog_differences, schema_catalog

    old, fresh = (f"jobqueue_q_{uuid.uuid4().hex[:10]}" for _ in range(2))
    old_url, fresh_url = pg_server.create_database(old), pg_server.create_database(fresh)
    try:
        migrate(old_url, "jobqueue_0001")
        with psycopg.connect(old_url, autocommit=True) as conn:
            conn.execute("drop table public.jobqueue_alembic_version")  # as install_schema left it
            conn.execute(
                "insert into worker.job (id, type, payload, origin) values (gen_random_uuid(), 't', '1', 'o')"
            )
        install_schema(old_url)
        install_schema(fresh_url)
        with psycopg.connect(old_url) as a, psycopg.connect(fresh_url) as b:
            assert catalog_differences(schema_catalog(a), schema_catalog(b), "upgraded", "fresh") == []
            assert a.execute("select queue from worker.job").fetchall() == [("default",)]
    finally:
        pg_server.drop_database(old)
        pg_server.drop_database(fresh)
