"""Unique jobs (``unique_key``, ``unique_for``, ``on_conflict``) on a real PostgreSQL: the
partial unique index job_unique_key_idx decides, under threads and open transactions too."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import jobqueue
from jobqueue import DuplicateJobError, InvalidJobError, JobDesc, new_job, new_job_bundle
from jobworker import Outcome, OutcomeKind
from jobworker_pg import PostgresService


def _job(key: str | None = "invoice:42", **kwargs: Any) -> jobqueue.Job:
    return new_job("invoice.send", "test", {"n": 1}, unique_key=key, **kwargs)


def _rows(db_url: str, key: str) -> int:
    with psycopg.connect(db_url) as c:
        row = c.execute("select count(*) from worker.job where unique_key = %s", (key,)).fetchone()
    assert row is not None
    return int(row[0])


def _finish(service: PostgresService, job_type: str = "invoice.send") -> None:
    """Claim the waiting jobs of ``job_type`` and end them succeeded."""
    claimed = service.claim_jobs([job_type], 100)
    assert claimed
    outcomes = [Outcome(j.id, j.claim_token, OutcomeKind.SUCCEEDED, j.attempt) for j in claimed]  # type: ignore[arg-type]
    assert service.save_outcomes(outcomes) == {j.id for j in claimed}


def test_adding_a_taken_key_returns_the_stored_job_marked_deduplicated(
    service: PostgresService, db_url: str
) -> None:
    first = service.add_job(_job())
    second = service.add_job(_job())
    assert first.deduplicated is False
    assert second.deduplicated is True
    assert second.id == first.id
    assert second.payload == {"n": 1}
    assert _rows(db_url, "invoice:42") == 1


def test_on_conflict_raise_raises_duplicate_job_error_with_the_holder(service: PostgresService) -> None:
    first = service.add_job(_job())
    with pytest.raises(DuplicateJobError, match="invoice:42") as caught:
        service.add_job(_job(on_conflict="raise"))
    assert caught.value.existing.id == first.id


def test_a_finished_job_frees_its_key(service: PostgresService, db_url: str) -> None:
    first = service.add_job(_job())
    _finish(service)
    again = service.add_job(_job())
    assert again.deduplicated is False
    assert again.id != first.id
    assert _rows(db_url, "invoice:42") == 2


def test_unique_for_dedupes_against_a_recent_finished_job(service: PostgresService, db_url: str) -> None:
    first = service.add_job(_job(unique_for=timedelta(hours=1)))
    _finish(service)
    again = service.add_job(_job(unique_for=timedelta(hours=1)))
    assert again.deduplicated is True
    assert again.id == first.id
    assert again.stopped
    assert _rows(db_url, "invoice:42") == 1


def test_unique_for_lets_a_job_in_once_the_period_has_passed(service: PostgresService, db_url: str) -> None:
    first = service.add_job(_job())
    _finish(service)
    with psycopg.connect(db_url, autocommit=True) as c:  # the first job was created two hours ago
        c.execute("update worker.job set created_at = now() - interval '2 hours' where id = %s", (first.id,))
    again = service.add_job(_job(unique_for=timedelta(hours=1)))
    assert again.deduplicated is False
    assert _rows(db_url, "invoice:42") == 2


def test_jobs_without_a_key_are_never_deduplicated(service: PostgresService) -> None:
    a = service.add_job(_job(None))
    b = service.add_job(_job(None))
    assert a.id != b.id
    assert not a.deduplicated and not b.deduplicated


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"unique_key": ""}, "must not be empty"),
        ({"unique_key": 42}, "must be a str"),
        ({"unique_key": "k" * 501}, "over the limit"),
        ({"unique_for": timedelta(hours=1)}, "needs a unique_key"),
        ({"unique_key": "k", "unique_for": -1}, "must be positive"),
        ({"unique_key": "k", "on_conflict": "ignore"}, "on_conflict"),
    ],
)
def test_bad_unique_options_are_rejected_by_new_job(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        new_job("t", "o", None, **kwargs)


def test_twenty_threads_adding_one_key_leave_one_row(db_url: str) -> None:
    service = PostgresService(db_url, max_size=20)
    try:
        start = threading.Barrier(20)
        results: list[jobqueue.Job] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def add() -> None:
            start.wait(timeout=30)
            try:
                job = service.add_job(_job("race"))
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return
            with lock:
                results.append(job)

        threads = [threading.Thread(target=add) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors
        assert len(results) == 20
        assert len({j.id for j in results}) == 1
        assert sum(not j.deduplicated for j in results) == 1
        assert _rows(db_url, "race") == 1
    finally:
        service.close()


def _add_in_thread(
    service: PostgresService, conn: psycopg.Connection[Any]
) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["job"] = service.add_job(_job("tx"), conn=conn)
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_two_open_transactions_with_one_key_neither_deadlock_nor_fail(
    service: PostgresService, db_url: str
) -> None:
    with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
        mine = service.add_job(_job("tx"), conn=first)
        thread, out = _add_in_thread(service, second)
        thread.join(timeout=0.5)
        assert thread.is_alive(), "the second insert waits for the first transaction"
        first.commit()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert "error" not in out, out.get("error")
        assert out["job"].deduplicated is True
        assert out["job"].id == mine.id
        second.commit()
    assert _rows(db_url, "tx") == 1


def test_a_rolled_back_holder_lets_the_waiting_transaction_store_its_job(
    service: PostgresService, db_url: str
) -> None:
    with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
        service.add_job(_job("tx"), conn=first)
        thread, out = _add_in_thread(service, second)
        thread.join(timeout=0.5)
        first.rollback()
        thread.join(timeout=30)
        assert "error" not in out, out.get("error")
        assert out["job"].deduplicated is False
        second.commit()
    assert _rows(db_url, "tx") == 1


def test_a_duplicate_in_the_callers_transaction_leaves_it_usable(
    service: PostgresService, db_url: str
) -> None:
    with psycopg.connect(db_url) as conn:
        first = service.add_job(_job("same-tx"), conn=conn)
        with pytest.raises(DuplicateJobError):
            service.add_job(_job("same-tx", on_conflict="raise"), conn=conn)
        again = service.add_job(_job("same-tx"), conn=conn)
        assert again.id == first.id and again.deduplicated
        conn.execute("select 1")  # the transaction is not aborted
        conn.commit()
    assert _rows(db_url, "same-tx") == 1


def test_add_many_dedupes_inside_the_batch_and_against_stored_jobs(
    service: PostgresService, db_url: str
) -> None:
    stored = service.add_job(_job("a"))
    jobs = [_job("a"), _job("b"), _job("b"), _job(None), _job("c")]
    result = service.add_jobs(jobs)
    assert [j.deduplicated for j in result] == [True, False, True, False, False]
    assert result[0].id == stored.id
    assert result[2].id == result[1].id == jobs[1].id
    assert result[3] is jobs[3] and result[4] is jobs[4]
    for key in ("a", "b", "c"):
        assert _rows(db_url, key) == 1


def test_add_many_with_a_raising_duplicate_stores_nothing(service: PostgresService, db_url: str) -> None:
    service.add_job(_job("a"))
    with pytest.raises(DuplicateJobError):
        service.add_jobs([_job("new"), _job("a", on_conflict="raise")])
    assert _rows(db_url, "new") == 0
    with pytest.raises(DuplicateJobError):
        service.add_jobs([_job("new"), _job("new", on_conflict="raise")])
    assert _rows(db_url, "new") == 0


def test_a_bundle_with_a_taken_key_is_not_stored(service: PostgresService, db_url: str) -> None:
    service.add_job(_job("a"))
    bundle = new_job_bundle(
        "b",
        "test",
        [JobDesc(type="x", payload=1, unique_key="fresh"), JobDesc(type="x", payload=2, unique_key="a")],
    )
    with pytest.raises(DuplicateJobError, match="'a'"):
        service.add_job_bundle(bundle)
    assert _rows(db_url, "fresh") == 0
    with pytest.raises(jobqueue.JobNotFoundError):
        service.get_job_bundle(bundle.id)


def test_a_bundle_of_unique_jobs_is_stored_and_holds_its_keys(service: PostgresService) -> None:
    bundle = service.add_job_bundle(
        new_job_bundle(
            "b", "test", [JobDesc(type="x", payload=1, unique_key="k1"), JobDesc(type="x", payload=2)]
        )
    )
    assert service.get_job_bundle(bundle.id).num_jobs == 2
    assert service.add_job(new_job("x", "test", 3, unique_key="k1")).deduplicated


def test_a_bundle_cannot_hold_one_key_twice() -> None:
    with pytest.raises(InvalidJobError, match="appears twice"):
        new_job_bundle("b", "o", [JobDesc(type="x", unique_key="k"), JobDesc(type="x", unique_key="k")])


def test_a_go_jobqueue_style_insert_without_a_key_still_works(service: PostgresService, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        for _ in range(2):  # the columns go-jobqueue inserts; unique_key stays null
            c.execute(
                "insert into worker.job (id, type, payload, priority, origin, max_retry_count)"
                " values (gen_random_uuid(), 'go.type', '{}', 0, 'go', 0)"
            )
        row = c.execute("select count(*) from worker.job where type = 'go.type'").fetchone()
    assert row == (2,)


def test_the_unique_index_is_used_by_the_holder_lookup(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        plan = c.execute(
            "explain select id from worker.job where unique_key = 'k' and stopped_at is null"
        ).fetchall()
    assert "job_unique_key" in " ".join(str(r[0]) for r in plan)


def test_unique_jobs_on_an_async_connection(service: PostgresService, db_url: str) -> None:
    import asyncio

    async def run() -> tuple[jobqueue.Job, jobqueue.Job, list[jobqueue.Job]]:
        async with await psycopg.AsyncConnection.connect(db_url) as aconn:
            first = await service.add_job_async(_job("async"), conn=aconn)
            again = await service.add_job_async(_job("async"), conn=aconn)
            batch = await service.add_jobs_async([_job("async"), _job("other")], conn=aconn)
            await aconn.commit()
        return first, again, batch

    first, again, batch = asyncio.run(run())
    assert again.deduplicated and again.id == first.id
    assert [j.deduplicated for j in batch] == [True, False]
    assert _rows(db_url, "async") == 1
