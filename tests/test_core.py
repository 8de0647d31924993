"""Pure logic of the jobqueue package: constructors, validation, models, current service."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pydantic
import pytest

import jobqueue
from jobqueue import InvalidJobError, Job, JobDesc, JobState


class Invoice(pydantic.BaseModel):
    number: int
    amount: float


@dataclasses.dataclass
class Reminder:
    user: str
    at: datetime


def test_new_job_fills_every_field() -> None:
    start = datetime.now(UTC) + timedelta(hours=1)
    job = jobqueue.new_job("mail", "signup", {"to": "a"}, priority=5, start_at=start, max_retry_count=3)
    assert isinstance(job.id, UUID)
    assert (job.type, job.origin, job.payload) == ("mail", "signup", {"to": "a"})
    assert (job.priority, job.start_at, job.max_retry_count) == (5, start, 3)
    assert job.state is JobState.SCHEDULED
    assert not job.started and not job.stopped and not job.has_error


def test_new_job_ids_sort_in_creation_order() -> None:
    ids = [jobqueue.new_job("t", "o", i).id for i in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 2000


def test_new_job_takes_pydantic_and_dataclass_payloads() -> None:
    job = jobqueue.new_job("t", "o", Invoice(number=1, amount=2.5))
    assert job.payload == {"number": 1, "amount": 2.5}
    at = datetime(2026, 1, 2, tzinfo=UTC)
    job = jobqueue.new_job("t", "o", Reminder("bob", at))
    assert job.payload == {"user": "bob", "at": "2026-01-02T00:00:00Z"}


def test_none_payload_is_json_null() -> None:
    assert jobqueue.new_job("t", "o", None).payload is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"job_type": ""}, "job type must not be empty"),
        ({"job_type": "   "}, "job type must not be empty"),
        ({"job_type": "x" * 101}, "job type is 101 characters long"),
        ({"origin": ""}, "origin must not be empty"),
        ({"origin": "y" * 101}, "origin is 101 characters long"),
        ({"job_type": "a\nb"}, "control character"),
        ({"job_type": 5}, "job type must be a str"),
        ({"payload": object()}, "not JSON-serialisable"),
        ({"payload": {"a": float("nan")}}, "not valid JSON"),
        ({"payload": {"a": float("inf")}}, "not valid JSON"),
        ({"payload": {1: "x"}}, "non-string key 1"),
        ({"payload": {"a": "nul\x00"}}, "NUL character"),
        ({"payload": {"nul\x00": 1}}, "NUL character"),
        ({"payload": "\ud800"}, "lone surrogate"),
        ({"payload": "x" * (1024 * 1024 + 1)}, "over the limit of 1048576 bytes"),
        ({"priority": 2**63}, "priority must be between"),
        ({"priority": True}, "priority must be an int"),
        ({"max_retry_count": -1}, "max_retry_count must be between 0"),
        ({"start_at": datetime(2030, 1, 1)}, "start_at must be timezone-aware"),
        ({"start_at": "tomorrow"}, "start_at must be a datetime"),
        ({"id": "not-a-uuid"}, "id must be a UUID"),
    ],
)
def test_new_job_rejects_bad_input_with_a_specific_message(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"job_type": "t", "origin": "o", "payload": {}}
    args.update(kwargs)
    with pytest.raises(InvalidJobError, match=message.replace("(", r"\(")):
        jobqueue.new_job(args.pop("job_type"), args.pop("origin"), args.pop("payload"), **args)


def test_invalid_job_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        jobqueue.new_job("", "o", None)


def test_deeply_nested_payload_is_rejected_not_crashing() -> None:
    payload: Any = []
    for _ in range(100_000):
        payload = [payload]
    with pytest.raises(InvalidJobError, match="nested more than"):
        jobqueue.new_job("t", "o", payload)


def test_names_may_hold_quotes_dollars_and_emoji() -> None:
    job = jobqueue.new_job('it\'s $$ "quoted" \\ 🎉', "o'rigin", {})
    assert job.type == 'it\'s $$ "quoted" \\ 🎉'


def test_payload_size_limit_is_configurable() -> None:
    try:
        jobqueue.set_max_payload_bytes(10)
        with pytest.raises(InvalidJobError, match="over the limit of 10 bytes"):
            jobqueue.new_job("t", "o", "0123456789")
        assert jobqueue.new_job("t", "o", "0123456").payload == "0123456"
    finally:
        jobqueue.set_max_payload_bytes(jobqueue.DEFAULT_MAX_PAYLOAD_BYTES)
    with pytest.raises(InvalidJobError, match="positive int"):
        jobqueue.set_max_payload_bytes(0)


def test_job_type_of_names_module_and_qualname() -> None:
    assert jobqueue.job_type_of(Invoice) == f"{__name__}.Invoice"
    assert jobqueue.job_type_of(Invoice(number=1, amount=1)) == f"{__name__}.Invoice"
    with pytest.raises(InvalidJobError, match="cannot infer a job type from a dict"):
        jobqueue.job_type_of({"a": 1})


def test_new_job_bundle_defaults_type_and_origin_from_payload_and_bundle() -> None:
    bundle = jobqueue.new_job_bundle(
        "report",
        "cron",
        [
            JobDesc(payload=Invoice(number=1, amount=1)),
            JobDesc(type="x", payload=2, origin="other", priority=3),
        ],
    )
    assert bundle.num_jobs == 2
    first, second = bundle.jobs
    assert first.type == f"{__name__}.Invoice" and first.origin == "cron"
    assert (second.type, second.origin, second.priority) == ("x", "other", 3)
    assert first.bundle_id == second.bundle_id == bundle.id


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ([], "at least one job"),
        ([JobDesc(payload={"a": 1})], r"jobs\[0\]: cannot infer a job type"),
        (
            [JobDesc(type="t", payload=1), JobDesc(type="", payload=1)],
            r"jobs\[1\]: job type must not be empty",
        ),
        (["not a desc"], r"jobs\[0\] must be a JobDesc"),
    ],
)
def test_new_job_bundle_rejects_bad_jobs(jobs: list[Any], message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        jobqueue.new_job_bundle("b", "o", jobs)


def test_job_state_properties() -> None:
    now = datetime.now(UTC)
    base = jobqueue.new_job("t", "o", None)
    assert base.model_copy(update={"started_at": now}).state is JobState.RUNNING
    done = base.model_copy(update={"started_at": now, "stopped_at": now})
    assert done.state is JobState.SUCCEEDED and done.succeeded and done.is_finished
    failed = done.model_copy(update={"error_msg": "x"})
    assert failed.state is JobState.FAILED and failed.has_error and not failed.succeeded
    assert base.model_copy(update={"error_msg": "x"}).state is JobState.RETRYING
    assert base.model_copy(update={"stopped_at": now, "cancelled_at": now}).state is JobState.CANCELLED


def test_worker_alive_compares_heartbeat_with_dead_for() -> None:
    now = datetime.now(UTC)
    job = jobqueue.new_job("t", "o", None).model_copy(update={"started_at": now, "worker_alive_at": now})
    assert job.worker_alive(timedelta(seconds=60))
    assert job.worker_alive(60)
    stale = job.model_copy(update={"worker_alive_at": now - timedelta(minutes=5)})
    assert not stale.worker_alive(timedelta(seconds=60))
    assert not jobqueue.new_job("t", "o", None).worker_alive(60)


def test_calls_before_set_up_raise_not_initialized_naming_the_fix() -> None:
    with pytest.raises(jobqueue.NotInitializedError, match="init_job_queue"):
        jobqueue.get_job(UUID(int=1))
    with pytest.raises(jobqueue.NotInitializedError, match=r"jobqueue\.add_job\(\)"):
        jobqueue.add(jobqueue.new_job("t", "o", None))


class RecordingService:
    """A stand-in Service that records what it was asked (pure logic test only)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.added: list[Job] = []

    def add_job(self, job: Job, *, conn: Any = None) -> Job:
        self.added.append(job)
        return job

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected call {name}")


def test_use_service_overrides_the_default_and_restores_it() -> None:
    outer, inner = RecordingService("outer"), RecordingService("inner")
    jobqueue.set_default_service(outer)
    try:
        with jobqueue.use_service(inner):
            jobqueue.add(jobqueue.new_job("t", "o", 1))
            assert jobqueue.get_service() is inner
        jobqueue.add(jobqueue.new_job("t", "o", 2))
        assert [j.payload for j in inner.added] == [1]
        assert [j.payload for j in outer.added] == [2]
    finally:
        jobqueue.set_default_service(None)


def test_use_service_follows_asyncio_tasks_and_copied_contexts() -> None:
    svc = RecordingService("ctx")

    async def in_task() -> Any:
        return jobqueue.get_service()

    async def main() -> Any:
        with jobqueue.use_service(svc):
            return await asyncio.create_task(in_task())

    assert asyncio.run(main()) is svc
    with jobqueue.use_service(svc):
        ctx = contextvars.copy_context()
    assert ctx.run(jobqueue.get_service) is svc
    assert jobqueue.get_service() is not svc


def test_all_lists_every_public_name_once() -> None:
    # The order of __all__ is checked by ruff (RUF022).
    import types

    import jobworker_pg

    for module in (jobqueue, jobworker_pg):
        public = {
            n
            for n in dir(module)
            if not n.startswith("_") and not isinstance(getattr(module, n), types.ModuleType)
        }
        assert len(module.__all__) == len(set(module.__all__))
        assert set(module.__all__) == public - {"annotations"}
