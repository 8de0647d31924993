"""do_job: one inline attempt without a database; hooks and the job context."""

from __future__ import annotations

import pydantic
import pytest

import jobworker
from jobqueue import Job, RegistrationError, new_job
from jobworker import JobContext, Registry, WorkerPool


class Order(pydantic.BaseModel):
    id: int


@pytest.fixture
def inline(registry: Registry) -> WorkerPool:
    return WorkerPool(None, registry)


def test_do_job_stores_the_decoded_result(registry: Registry, inline: WorkerPool) -> None:
    registry.register("t", lambda job: Order(id=job.payload["n"] * 2))
    job = inline.do_job(new_job("t", "test", {"n": 21}))
    assert job.result == {"id": 42}
    assert job.succeeded
    assert job.attempt == 1


def test_do_job_records_a_handler_error_without_raising(registry: Registry, inline: WorkerPool) -> None:
    def fail(job: Job) -> None:
        raise ValueError("no stock\nmore detail")

    registry.register("t", fail)
    job = inline.do_job(new_job("t", "test", None))
    assert job.error_msg == "no stock"
    assert job.error_data["type"] == "ValueError"
    assert "raise ValueError" in job.error_data["traceback"]
    assert [e.message for e in job.errors] == ["no stock"]
    assert job.has_error and job.stopped and not job.succeeded


def test_do_job_result_that_is_not_json_is_a_failure(registry: Registry, inline: WorkerPool) -> None:
    registry.register("t", lambda job: object())
    job = inline.do_job(new_job("t", "test", None))
    assert job.error_msg is not None
    assert "result is not JSON-serialisable" in job.error_msg


def test_do_job_typed_payload_failing_validation_names_type_and_problem(
    registry: Registry, inline: WorkerPool
) -> None:
    def handle(order: Order) -> int:
        return order.id

    registry.register_func_for_job_type("orders", handle)
    assert inline.do_job(new_job("orders", "test", {"id": "7"})).result == 7
    job = inline.do_job(new_job("orders", "test", {"id": "seven"}))
    assert job.error_msg is not None
    assert "'orders'" in job.error_msg
    assert "id:" in job.error_msg
    assert job.error_data["type"] == "jobworker.InvalidPayloadError"


def test_do_job_of_unregistered_type_raises(inline: WorkerPool) -> None:
    with pytest.raises(RegistrationError, match="no handler is registered for job type 'nope'"):
        inline.do_job(new_job("nope", "test", None))


def test_hooks_run_global_first_in_registration_order(registry: Registry, inline: WorkerPool) -> None:
    calls: list[str] = []
    registry.register("t", lambda job: calls.append("handler"))
    registry.add_before_job_hook(lambda job: calls.append("before-t-1"), job_type="t")
    registry.add_before_job_hook(lambda job: calls.append("before-global-1"))
    registry.add_before_job_hook(lambda job: calls.append("before-global-2"))
    registry.add_after_job_hook(lambda job, error: calls.append(f"after-t {error}"), job_type="t")
    registry.add_after_job_hook(lambda job, error: calls.append(f"after-global {error}"))
    registry.add_before_job_hook(lambda job: calls.append("before-other"), job_type="other")
    inline.do_job(new_job("t", "test", None))
    assert calls == [
        "before-global-1",
        "before-global-2",
        "before-t-1",
        "handler",
        "after-global None",
        "after-t None",
    ]


def test_failing_hooks_are_reported_and_do_not_lose_the_job(registry: Registry, inline: WorkerPool) -> None:
    reported: list[BaseException] = []
    inline.on_error(reported.append)
    errors: list[BaseException | None] = []

    def bad_before(job: Job) -> None:
        raise RuntimeError("before broke")

    def bad_after(job: Job, error: BaseException | None) -> None:
        raise RuntimeError("after broke")

    registry.register("t", lambda job: "done")
    registry.add_before_job_hook(bad_before)
    registry.add_after_job_hook(bad_after)
    registry.add_after_job_hook(lambda job, error: errors.append(error))
    job = inline.do_job(new_job("t", "test", None))
    assert job.result == "done"
    assert [str(e) for e in reported] == ["before broke", "after broke"]
    assert errors == [None]


def test_after_hook_receives_the_handler_error(registry: Registry, inline: WorkerPool) -> None:
    errors: list[BaseException | None] = []
    registry.register("t", lambda job: 1 / 0)
    registry.add_after_job_hook(lambda job, error: errors.append(error))
    inline.do_job(new_job("t", "test", None))
    assert len(errors) == 1
    assert isinstance(errors[0], ZeroDivisionError)


def test_handler_sees_its_job_context(registry: Registry) -> None:
    seen: list[JobContext] = []

    def handler(job: Job) -> None:
        seen.append(jobworker.current_job_context())

    registry.register("t", handler, timeout=30)
    job = WorkerPool(None, registry).do_job(new_job("t", "test", None))
    (context,) = seen
    assert context.job is job
    assert not context.cancelled
    assert 25 < context.seconds_left() <= 30
    with pytest.raises(RuntimeError, match="outside a job handler"):
        jobworker.current_job_context()


def test_system_exit_from_a_handler_is_recorded(registry: Registry, inline: WorkerPool) -> None:
    def leave(job: Job) -> None:
        raise SystemExit("bye")

    registry.register("t", leave)
    job = inline.do_job(new_job("t", "test", None))
    assert job.error_msg == "bye"
    assert job.error_data["type"] == "SystemExit"


def test_bundle_handler_cannot_run_inline(registry: Registry, inline: WorkerPool) -> None:
    registry.register_bundle_handler("b", lambda bundle: None)
    job = inline.do_job(
        new_job(
            jobworker.BUNDLE_JOB_PREFIX + "b",
            "test",
            {"bundle_id": str(new_job("x", "y", 1).id), "bundle_type": "b"},
        )
    )
    assert job.error_msg is not None
    assert "needs a database" in job.error_msg


def test_module_do_job_uses_the_default_registry() -> None:
    jobworker.register("unit.do-job", lambda job: job.payload + 1)
    try:
        assert jobworker.do_job(new_job("unit.do-job", "test", 1)).result == 2
    finally:
        jobworker.unregister("unit.do-job")
