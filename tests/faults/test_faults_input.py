"""Bad input at the public API: a clear InvalidJobError before any SQL, nothing written.

Each case is tried twice: at construction (``new_job`` with the bad value) and at
enqueue (a valid job whose field is then set to the bad value, added with ``conn=``
inside the caller's open transaction, which must stay usable). Every input and the
exact message are written to the figures report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from faultkit import TEST_APP, connect, one, report, wait_for
from helpers import Notifications
from pydantic import BaseModel

import jobqueue
from jobqueue import InvalidJobError
from jobworker import Registry, WorkerPool, WorkerSettings
from jobworker_pg import PostgresService

pytestmark = pytest.mark.faults


class FloatModel(BaseModel):
    x: float


def nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def nested_dict(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def circular() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


@dataclass(frozen=True)
class Bad:
    """One bad input: ``field`` of new_job set to ``make()``, described as ``shown``."""

    field: str
    shown: str
    make: Callable[[], Any]
    expect: str  # a piece of the error message that names the problem


BAD: list[Any] = [
    # payloads
    Bad("payload", "object()", object, "not JSON-serialisable"),
    Bad("payload", "{1, 2} (a set)", lambda: {1, 2}, "not JSON-serialisable"),
    Bad("payload", "b'bytes'", lambda: b"bytes", "not JSON-serialisable"),
    Bad("payload", "datetime.now(UTC)", lambda: datetime.now(UTC), "not JSON-serialisable"),
    Bad("payload", "Decimal('1.5')", lambda: Decimal("1.5"), "not JSON-serialisable"),
    Bad("payload", "'a\\x00b'", lambda: "a\x00b", "NUL"),
    Bad("payload", "{'k\\x00': 1}", lambda: {"k\x00": 1}, "NUL"),
    Bad("payload", "['\\ud800'] (lone surrogate)", lambda: ["\ud800"], "lone surrogate"),
    Bad("payload", "{'\\udfff': 1} (lone surrogate key)", lambda: {"\udfff": 1}, "lone surrogate"),
    Bad("payload", "float('nan')", lambda: math.nan, "not valid JSON"),
    Bad("payload", "{'x': inf}", lambda: {"x": math.inf}, "not valid JSON"),
    Bad("payload", "[-inf]", lambda: [-math.inf], "not valid JSON"),
    Bad("payload", "FloatModel(x=nan) (pydantic)", lambda: FloatModel(x=math.nan), "not valid JSON"),
    Bad("payload", "{1: 'a'}", lambda: {1: "a"}, "non-string key"),
    Bad("payload", "{None: 1}", lambda: {None: 1}, "non-string key"),
    Bad("payload", "{(1, 2): 1}", lambda: {(1, 2): 1}, "non-string key"),
    Bad("payload", "'x' * 10 MiB", lambda: "x" * (10 * 1024 * 1024), "over the limit"),
    Bad("payload", "list nested 100,000 deep", lambda: nested_list(100_000), "nested more than"),
    Bad("payload", "dict nested 100,000 deep", lambda: nested_dict(100_000), "nested more than"),
    Bad("payload", "a list that contains itself", circular, "nested more than"),
    Bad("payload", "10**5000 (5,001 digits)", lambda: 10**5000, "not valid JSON"),
    # job types and origins
    *[
        Bad(field, shown, make, expect)
        for field in ("job_type", "origin")
        for shown, make, expect in [
            ("''", lambda: "", "must not be empty"),
            ("'   '", lambda: "   ", "must not be empty"),
            ("'a\\nb'", lambda: "a\nb", "control character"),
            ("'a\\x00b'", lambda: "a\x00b", "control character"),
            ("'x' * 101", lambda: "x" * 101, "over the limit of 100"),
            ("'\\ud800' (lone surrogate)", lambda: "\ud800", "not valid Unicode"),
            ("None", lambda: None, "must be a str"),
            ("42", lambda: 42, "must be a str"),
        ]
    ],
    *[
        pytest.param(
            Bad(field, "'a\\x85b' (NEL, a C1 control character)", lambda: "a\x85b", "control character"),
            id=f"{field}-C1-control",
        )
        for field in ("job_type", "origin")
    ],
    # start_at and the other arguments
    Bad("start_at", "datetime.now() (naive)", datetime.now, "timezone-aware"),
    Bad("start_at", "'2030-01-01T00:00:00Z' (a str)", lambda: "2030-01-01T00:00:00Z", "must be a datetime"),
    Bad("start_at", "date(2030, 1, 1)", lambda: date(2030, 1, 1), "must be a datetime"),
    Bad("priority", "2**63", lambda: 2**63, "must be between"),
    Bad("priority", "'1'", lambda: "1", "must be an int"),
    Bad("priority", "True", lambda: True, "must be an int"),
    Bad("max_retry_count", "-1", lambda: -1, "must be between"),
    Bad("max_retry_count", "1.5", lambda: 1.5, "must be an int"),
    pytest.param(
        Bad("id", "'not-a-uuid'", lambda: "not-a-uuid", "must be a UUID"),
        id="id-not-a-uuid",
    ),
]

#: Job attribute set by the enqueue variant, per new_job argument.
ATTRIBUTE = {"job_type": "type"}


def case_id(case: Any) -> str:
    return f"{case.field}-{case.shown}"[:60] if isinstance(case, Bad) else str(case)


@pytest.fixture(scope="module")
def input_url(pg_server: Any, template_db: str) -> Iterator[str]:
    name = f"jobqueue_faults_input_{uuid4().hex[:8]}"
    url = pg_server.create_database(name, template=template_db)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def input_service(input_url: str) -> Iterator[PostgresService]:
    with PostgresService(input_url) as svc:
        yield svc


@pytest.fixture
def empty(input_url: str) -> str:
    """The module's database, with no jobs."""
    with connect(input_url) as conn:
        conn.execute("delete from worker.job")
        conn.execute("delete from worker.job_bundle")
    return input_url


def good(**kw: Any) -> jobqueue.Job:
    return jobqueue.new_job("faults.good", "faults", {"ok": True}, **kw)


def error_of(fn: Callable[[], Any]) -> BaseException | None:
    try:
        fn()
    except BaseException as exc:
        return exc
    return None


@pytest.mark.parametrize("case", BAD, ids=case_id)
def test_bad_input_is_refused_with_a_clear_error_and_nothing_written(
    case: Bad, empty: str, input_service: PostgresService
) -> None:
    value = case.make()
    kwargs: dict[str, Any] = {"job_type": "faults.t", "origin": "faults", "payload": {"ok": True}}
    kwargs[case.field] = value

    # 1. At construction.
    built = error_of(lambda: jobqueue.new_job(**kwargs))

    # 2. At enqueue: a valid job changed afterwards, added inside the caller's transaction
    #    after a good job; then the same in a batch.
    def changed() -> jobqueue.Job:
        job = good()
        setattr(job, ATTRIBUTE.get(case.field, case.field), value)
        return job

    with psycopg.connect(empty, application_name=TEST_APP) as conn:
        input_service.add_job(good(), conn=conn)
        added = error_of(lambda: input_service.add_job(changed(), conn=conn))
        usable = error_of(lambda: conn.execute("select 1")) is None  # no SQL error aborted it
        conn.commit()
    batch = error_of(lambda: input_service.add_jobs([good(), changed()]))
    written = int(one(empty, "select count(*) from worker.job where type <> 'faults.good'"))
    good_rows = int(one(empty, "select count(*) from worker.job where type = 'faults.good'"))

    report(
        "bad_input",
        field=case.field,
        input=case.shown,
        new_job=f"{type(built).__name__}: {built}"[:300] if built else "accepted",
        add_job=f"{type(added).__name__}: {added}"[:300] if added else "accepted",
        add_jobs=f"{type(batch).__name__}: {batch}"[:300] if batch else "accepted",
        caller_transaction_usable=usable,
        rows_written=written,
    )
    for when, exc in (("new_job", built), ("add_job", added), ("add_jobs", batch)):
        assert isinstance(exc, InvalidJobError), f"{when}: {exc!r}"
        assert case.expect in str(exc), f"{when}: {exc}"
    assert isinstance(batch, InvalidJobError) and str(batch).startswith("jobs[1]: ")
    assert usable
    assert written == 0
    assert good_rows == 1  # the caller's own job, committed with its transaction


def test_payload_changed_in_place_after_new_job_is_stored_as_changed_or_refused(
    empty: str, input_service: PostgresService
) -> None:
    job = jobqueue.new_job("faults.t", "faults", {"a": 1})
    job.payload["a"] = 2
    job.payload["nul"] = "x\x00y"  # not storable in jsonb: must be refused, not dropped
    exc = error_of(lambda: input_service.add_job(job))
    stored = None if exc else input_service.get_job(job.id).payload
    report(
        "bad_input", field="payload", input="changed in place after new_job", add_job=str(exc), stored=stored
    )
    assert isinstance(exc, InvalidJobError) and "NUL" in str(exc), (exc, stored)


ODD_NAMES = [
    'quote"d',
    "it's",
    "back\\slash",
    "$$dollar$$",
    "$1",
    "%s %(x)s {}",
    "'); drop table worker.job; --",
    "emoji 🚀✨",
    "x" * 100,
    "🚀" * 100,
    "e\u0301 (combining)",
]


def test_odd_but_valid_names_are_stored_verbatim_and_notified_as_json(
    empty: str, input_service: PostgresService
) -> None:
    """Quotes, backslashes, $$, placeholders, SQL, emoji, exactly 100 characters: stored and
    read back unchanged, and the job_available notification carries them as valid JSON."""
    notifications = Notifications(empty, ("job_available",))
    try:
        jobs = [input_service.add_job(jobqueue.new_job(name, name, {"name": name})) for name in ODD_NAMES]
        heard = {p["id"]: p for _, p in notifications.collect(quiet=0.5)}
    finally:
        notifications.close()
    for job, name in zip(jobs, ODD_NAMES, strict=True):
        got = input_service.get_job(job.id)
        assert (got.type, got.origin, got.payload) == (name, name, {"name": name})
        assert heard[str(job.id)]["type"] == name and heard[str(job.id)]["origin"] == name
    report("odd_names", names=ODD_NAMES, stored_verbatim=True, notified=len(heard))


def test_job_of_a_type_no_worker_serves_is_enqueued_and_never_claimed(
    empty: str, input_service: PostgresService
) -> None:
    """An unknown job type is accepted (another deployment may serve it) and a worker that
    does not serve it never claims it, even at a higher priority than the jobs it runs."""
    unknown = input_service.add_job(
        jobqueue.new_job("faults.nobody-serves-this", "faults", None, priority=100)
    )
    ran: list[str] = []
    registry = Registry()
    registry.register("faults.served", lambda job: ran.append(str(job.id)))
    pool = WorkerPool(input_service, registry, WorkerSettings(heartbeat_interval=timedelta(seconds=0.5)))
    served = input_service.add_jobs([jobqueue.new_job("faults.served", "faults", i) for i in range(5)])
    pool.start_threads(2)
    try:
        wait_for(lambda: all(input_service.get_job(j.id).stopped for j in served), 20, "served jobs run")
        late = input_service.add_job(jobqueue.new_job("faults.served", "faults", "late"))
        wait_for(lambda: input_service.get_job(late.id).stopped, 20, "a later claim round")
    finally:
        assert pool.finish_threads(10)
    got = input_service.get_job(unknown.id)
    assert (got.started_at, got.attempt, got.stopped_at) == (None, 0, None)
    assert len(ran) == 6
    report("unknown_job_type", enqueued=True, claimed=False, served_jobs_run=len(ran))
