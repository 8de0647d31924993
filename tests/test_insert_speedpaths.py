"""The fast paths of enqueueing: new_job's direct Job construction, validation without encoding,
buffered UUIDv7 ids, and COPY for add_many and bundles (from COPY_MIN_JOBS jobs on). Each must
store and behave exactly as the plain paths do, with the same guarantees."""

from __future__ import annotations

import asyncio
import copy
import functools
import math
import os
import pickle
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import psycopg
import pytest
import sqlalchemy as sa
from helpers import KINDS, Notifications, count_jobs, open_conn

import jobqueue
import jobworker_pg._inserts as inserts_module
import jobworker_pg._steps as steps_module
from jobqueue import DatabaseError, InvalidJobError, Job, JobDesc
from jobqueue._constructors import _job_fields, check_name
from jobqueue._ids import new_id
from jobqueue._payload import _valid_without_encoding, check_json, encode_json
from jobworker_pg import PostgresService, ignore_jobs
from jobworker_pg._inserts import COPY_MIN_JOBS

MANY = COPY_MIN_JOBS + 5  # a batch that goes through COPY
FEW = 3  # a batch that goes through one insert_jobs statement

# -- new_job builds a normal Job ---------------------------------------------------------------


def test_new_job_builds_the_job_model_construct_builds() -> None:
    assert _job_fields is not None  # the import-time self-check passed: the fast path is on
    start = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    job = jobqueue.new_job("t", "o", {"a": [1, 2]}, priority=3, start_at=start, max_retry_count=2)
    slow = Job.model_construct(**{**job.__dict__, "errors": []})
    assert job == slow
    assert job.model_fields_set == slow.model_fields_set == set(Job.model_fields)
    assert job.model_dump() == slow.model_dump()
    assert job.model_dump_json() == slow.model_dump_json()
    assert job.__pydantic_private__ == slow.__pydantic_private__
    assert repr(job) == repr(slow)
    assert pickle.loads(pickle.dumps(job)) == job
    assert copy.deepcopy(job) == job and job.model_copy(update={"priority": 9}).priority == 9
    assert Job.model_validate(job.model_dump()) == job
    other = jobqueue.new_job("t", "o", None)
    assert job.errors is not other.errors  # a list of its own, not a shared default
    job.priority = 7
    assert job.priority == 7 and "priority" in job.model_fields_set


def test_bundle_jobs_carry_their_bundle_id() -> None:
    bundle = jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload=i) for i in range(3)])
    assert all(j.bundle_id == bundle.id for j in bundle.jobs)
    assert all(j.model_fields_set == set(Job.model_fields) for j in bundle.jobs)


# -- validation without encoding agrees with encoding -------------------------------------------


def _outcome(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except InvalidJobError as exc:
        return f"error: {exc}"
    return "ok"


SCALARS: list[Any] = [
    0,
    -1,
    2**63 - 1,
    -(2**63) + 1,
    2**63,
    -(2**63),
    10**5000,
    1.5,
    -0.0,
    1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    False,
    None,
    "",
    "plain",
    'quote " and \\ backslash',
    "tab\tnewline\ncr\r",
    "\x01 control",
    "nul \x00 inside",
    "grüße 🚀",
    "lone \ud800 surrogate",
    "x" * 300,
    [1, 2],
    {"nested": 1},
]
KEYS: list[Any] = ["k", "", "long" * 50, "ü", "nul\x00", "\ud800", 1, None, ("t",)]


@pytest.mark.parametrize("limit", [jobqueue.DEFAULT_MAX_PAYLOAD_BYTES, 10, 64, 400])
def test_check_json_raises_exactly_when_encoding_does(limit: int) -> None:
    rng = random.Random(limit)
    payloads: list[Any] = [{}, {"a": 1}, [], "s", 1, None]
    payloads += [{key: value} for key in KEYS for value in SCALARS]
    for _ in range(2000):
        size = rng.randint(0, 6)
        payloads.append({rng.choice(KEYS[:4]) + str(i): rng.choice(SCALARS) for i in range(size)})
    try:
        jobqueue.set_max_payload_bytes(limit)
        for payload in payloads:
            expected = _outcome(functools.partial(encode_json, payload))
            assert _outcome(functools.partial(check_json, payload)) == expected, payload
            if _valid_without_encoding(payload):
                assert expected == "ok", payload
    finally:
        jobqueue.set_max_payload_bytes(jobqueue.DEFAULT_MAX_PAYLOAD_BYTES)


def test_new_job_still_refuses_what_the_fast_check_cannot_vouch_for() -> None:
    for payload, message in [
        ({"a": math.nan}, "not valid JSON"),
        ({"a": "\ud800"}, "lone surrogate"),
        ({"a": "\x00"}, "NUL"),
        ({1: "a"}, "non-string key"),
        ({"a": "x" * (1024 * 1024)}, "over the limit"),
    ]:
        with pytest.raises(InvalidJobError, match=message):
            jobqueue.new_job("t", "o", payload)


def test_names_are_cached_only_once_valid() -> None:
    for bad in ["", " ", "a\nb", "x" * 101, "\ud800"]:
        for _ in range(2):
            with pytest.raises(InvalidJobError):
                check_name(bad, "job type")
    assert check_name("fine", "job type") == "fine"
    assert check_name("fine", "job type") == "fine"


# -- ids ------------------------------------------------------------------------------------------


def test_ids_are_unique_ordered_version_7() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i.version == 7 and i.variant == "specified in RFC 4122" for i in ids)
    assert all(type(i) is UUID and i == UUID(str(i)) and hash(i) == hash(UUID(str(i))) for i in ids[:100])


FORK_SCRIPT = """
import os
from jobqueue._ids import new_id

new_id()  # the parent now holds buffered random bytes
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, b"".join(new_id().bytes for _ in range(50)))
    os._exit(0)
os.close(write)
data = b""
while chunk := os.read(read, 4096):
    data += chunk
os.waitpid(pid, 0)
mask = (1 << 62) - 1
child = {int.from_bytes(data[i : i + 16], "big") & mask for i in range(0, len(data), 16)}
parent = {new_id().int & mask for _ in range(50)}
assert len(child) == 50 and not child & parent, "child and parent share random bits"
print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_reuse_the_parents_random_bits() -> None:
    # In a fresh interpreter: forking this (threaded) test process is unsafe.
    done = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


# -- COPY stores what the statement stores --------------------------------------------------------

ODD = ['quote"d', "it's", "back\\slash", "tab-free 🚀", "$1 %s {}"]
PAYLOADS: list[Any] = [
    {"i": 1},
    None,
    [1, "two", None, 3.5],
    "a \\ b \t c \n d",
    {"nested": {"deep": [{"x": "ü"}]}, "n": -(2**63) + 1},
    {"big": 2**63 - 1, "neg": -0.0, "t": True},
    "\x01\x1f",
]


def varied_jobs(n: int, bundle_id: UUID | None = None) -> list[Job]:
    jobs = []
    for i in range(n):
        job = jobqueue.new_job(
            ODD[i % len(ODD)],
            ODD[(i + 2) % len(ODD)],
            PAYLOADS[i % len(PAYLOADS)],
            priority=[0, 2**63 - 1, -(2**63), 5][i % 4],
            start_at=[
                None,
                datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            ][i % 2],
            max_retry_count=[0, 2**31 - 1, 3][i % 3],
        )
        if bundle_id is not None:
            job.__dict__["bundle_id"] = bundle_id
        jobs.append(job)
    return jobs


STORED_FIELDS = ("id", "bundle_id", "type", "payload", "priority", "origin", "max_retry_count", "start_at")


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows each insert sent through COPY (sync and async paths)."""
    sizes: list[int] = []
    real = inserts_module.copy_rows

    def spy(jobs: list[Job], payloads: list[str]) -> Iterator[tuple[Any, ...]]:
        sizes.append(len(jobs))
        return real(jobs, payloads)

    monkeypatch.setattr(steps_module, "copy_rows", spy)  # one insert path for sync and async
    return sizes


@pytest.mark.parametrize("n", [FEW, COPY_MIN_JOBS - 1, COPY_MIN_JOBS, MANY])
def test_add_many_stores_every_field_and_the_database_clock(
    service: PostgresService, copies: list[int], n: int
) -> None:
    jobs = varied_jobs(n)
    before = [(j.model_dump(include=set(STORED_FIELDS))) for j in jobs]
    stored = service.add_jobs(jobs)
    assert copies == ([n] if n >= COPY_MIN_JOBS else [])
    assert stored == jobs
    created = {j.created_at for j in jobs} | {j.updated_at for j in jobs}
    assert len(created) == 1 and None not in created
    for job, expected in zip(jobs, before, strict=True):
        got = service.get_job(job.id)
        assert got.model_dump(include=set(STORED_FIELDS)) == expected
        assert (got.created_at, got.updated_at) == (job.created_at, job.updated_at)
        assert (got.current_retry_count, got.attempt, got.errors, got.started_at) == (0, 0, [], None)


def test_copy_notifies_once_per_type_with_the_job_that_runs_first(
    service: PostgresService, db_url: str
) -> None:
    jobs = [jobqueue.new_job("a" if i % 3 else "b", "o", {"i": i}) for i in range(MANY)]
    urgent = jobs[7]
    urgent.priority = 5
    listen = Notifications(db_url, ("job_available",))
    try:
        service.add_jobs(jobs)
        notes = listen.collect()
    finally:
        listen.close()
    by_type = {n[1]["type"]: n[1] for n in notes}
    assert len(notes) == 2 and set(by_type) == {"a", "b"}
    assert by_type[urgent.type] == {"id": str(urgent.id), "type": urgent.type, "origin": "o"}
    first_other = next(j for j in jobs if j.type != urgent.type)
    assert by_type[first_other.type]["id"] == str(first_other.id)


def test_copy_of_a_duplicate_id_stores_nothing(service: PostgresService, db_url: str) -> None:
    existing = service.add_job(jobqueue.new_job("t", "o", 0))
    jobs = [jobqueue.new_job("t", "o", i) for i in range(MANY)]
    jobs[-1].id = existing.id
    with pytest.raises(DatabaseError, match="UniqueViolation"):
        service.add_jobs(jobs)
    assert [j.id for j in service.get_all_jobs()] == [existing.id]
    assert all(j.created_at is None for j in jobs)
    service.add_jobs(jobs[:-1])  # the pooled connection is fine afterwards
    assert len(service.get_all_jobs()) == MANY


def test_invalid_job_in_a_large_batch_is_refused_before_any_sql(
    service: PostgresService, db_url: str
) -> None:
    jobs = [jobqueue.new_job("t", "o", {"i": i}) for i in range(MANY)]
    jobs[COPY_MIN_JOBS].payload["bad"] = "nul\x00"  # changed in place after new_job
    with psycopg.connect(db_url) as conn:
        with pytest.raises(InvalidJobError, match=rf"^jobs\[{COPY_MIN_JOBS}\]: .*NUL"):
            service.add_jobs(jobs, conn=conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # no statement ran
    assert service.get_all_jobs() == []


def test_test_modes_store_the_remaining_jobs_with_their_own_payloads(service: PostgresService) -> None:
    jobs = [jobqueue.new_job("keep" if i % 2 else "drop", "o", {"i": i}) for i in range(2 * MANY)]
    with ignore_jobs(lambda job: job.type == "drop"):
        service.add_jobs(jobs)
    stored = {j.id: j.payload for j in service.get_all_jobs()}
    assert stored == {j.id: j.payload for j in jobs if j.type == "keep"}


# -- COPY inside the caller's transaction ---------------------------------------------------------


def transaction_now(conn: Any) -> datetime:
    if isinstance(conn, psycopg.Connection):
        row = conn.execute("select now()").fetchone()
        assert row is not None
        value: datetime = row[0]
        return value
    result: datetime = conn.execute(sa.text("select now()")).scalar_one()
    return result


@pytest.mark.parametrize("kind", KINDS)
def test_copy_joins_the_callers_transaction_and_commits_with_it(
    current: PostgresService, db_url: str, kind: str, copies: list[int]
) -> None:
    listen = Notifications(db_url, ("job_available",))
    try:
        with open_conn(kind, db_url) as (conn, commit, _):
            jobs = jobqueue.add_many([jobqueue.new_job("t", "o", i) for i in range(MANY)], conn=conn)
            bundle = jobqueue.add_bundle(
                jobqueue.new_job_bundle("b", "o", [JobDesc(type="u", payload=i) for i in range(MANY)]),
                conn=conn,
            )
            now = transaction_now(conn)
            assert count_jobs(db_url) == 0 and listen.collect(quiet=0.2) == []
            commit()
        notes = listen.collect()
    finally:
        listen.close()
    assert copies == [MANY, MANY]
    assert {j.created_at for j in jobs} == {j.created_at for j in bundle.jobs} == {now}
    assert bundle.created_at == now
    assert count_jobs(db_url) == 2 * MANY
    assert sorted(n[1]["type"] for n in notes) == ["t", "u"]
    assert len(current.get_job_bundle(bundle.id).jobs) == MANY


@pytest.mark.parametrize("kind", KINDS)
def test_copy_in_a_rolled_back_transaction_leaves_nothing(
    current: PostgresService, db_url: str, kind: str
) -> None:
    listen = Notifications(db_url, ("job_available",))
    try:
        with open_conn(kind, db_url) as (conn, _, rollback):
            jobqueue.add_many([jobqueue.new_job("t", "o", i) for i in range(MANY)], conn=conn)
            rollback()
        notes = listen.collect(quiet=0.3)
    finally:
        listen.close()
    assert notes == [] and count_jobs(db_url) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_failed_copy_rolls_back_to_a_savepoint_and_keeps_the_transaction_usable(
    current: PostgresService, db_url: str, kind: str
) -> None:
    with open_conn(kind, db_url) as (conn, commit, _):
        first = jobqueue.add(jobqueue.new_job("t", "o", -1), conn=conn)
        batch = [jobqueue.new_job("t", "o", i) for i in range(MANY)]
        batch[-1].id = first.id
        with pytest.raises(DatabaseError, match="UniqueViolation"):
            jobqueue.add_many(batch, conn=conn)
        bundle = jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload=i) for i in range(MANY)])
        bundle.jobs[3].id = first.id
        with pytest.raises(DatabaseError, match="UniqueViolation"):
            jobqueue.add_bundle(bundle, conn=conn)
        jobqueue.add_many([jobqueue.new_job("t", "o", 100 + i) for i in range(MANY)], conn=conn)
        commit()
    payloads = sorted(j.payload for j in current.get_all_jobs_to_do())
    assert payloads == [-1] + [100 + i for i in range(MANY)]
    with psycopg.connect(db_url) as c:
        assert c.execute("select count(*) from worker.job_bundle").fetchone() == (0,)


def test_large_bundle_on_the_pool_is_all_or_none(current: PostgresService, db_url: str) -> None:
    ok = jobqueue.add_bundle(
        jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload=i) for i in range(MANY)])
    )
    got = current.get_job_bundle(ok.id)
    assert [j.payload for j in got.jobs] == list(range(MANY))
    assert {j.created_at for j in got.jobs} == {ok.created_at} == {j.created_at for j in ok.jobs}
    bad = jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload=i) for i in range(MANY)])
    bad.jobs[-1].id = ok.jobs[0].id
    with pytest.raises(DatabaseError, match="UniqueViolation"):
        jobqueue.add_bundle(bad)
    with pytest.raises(jobqueue.JobNotFoundError):
        current.get_job_bundle(bad.id)
    assert count_jobs(db_url) == MANY


# -- async ----------------------------------------------------------------------------------------


def test_async_copy_joins_the_transaction(current: PostgresService, db_url: str, copies: list[int]) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            jobs = await jobqueue.add_many_async(
                [jobqueue.new_job("t", "o", i) for i in range(MANY)], conn=conn
            )
            await conn.rollback()
            assert count_jobs(db_url) == 0
            jobs = await jobqueue.add_many_async(
                [jobqueue.new_job("t", "o", i) for i in range(MANY)], conn=conn
            )
            bundle = jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload=i) for i in range(MANY)])
            await jobqueue.add_bundle_async(bundle, conn=conn)
            cursor = await conn.execute("select now()")
            row = await cursor.fetchone()
            assert row is not None
            await conn.commit()
        assert {j.created_at for j in jobs} == {j.created_at for j in bundle.jobs} == {row[0]}
        stored = current.get_job(jobs[5].id)
        assert (stored.payload, stored.created_at) == (5, row[0])

    asyncio.run(scenario())
    assert copies == [MANY, MANY, MANY]
    assert count_jobs(db_url) == 2 * MANY


def test_async_failed_copy_keeps_the_transaction_usable(current: PostgresService, db_url: str) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            first = await jobqueue.add_async(jobqueue.new_job("t", "o", -1), conn=conn)
            batch = [jobqueue.new_job("t", "o", i) for i in range(MANY)]
            batch[0].id = first.id
            with pytest.raises(DatabaseError, match="UniqueViolation"):
                await jobqueue.add_many_async(batch, conn=conn)
            await jobqueue.add_many_async(batch[1:], conn=conn)
            await conn.commit()

    asyncio.run(scenario())
    assert count_jobs(db_url) == MANY
