"""Registration rules of jobworker.Registry: types, typed functions, hooks, bundles, freezing."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pydantic
import pytest
from typing_extensions import TypedDict

import jobworker
from jobqueue import Job, RegistrationError, job_type_of, new_job
from jobworker import BUNDLE_JOB_PREFIX, InvalidPayloadError, Registry


class Greeting(pydantic.BaseModel):
    name: str
    times: int = 1


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Pair(TypedDict):
    left: str
    right: str


def test_register_and_query_job_types(registry: Registry) -> None:
    registry.register("b.type", lambda job: None)
    registry.register("a.type", lambda job: None, timeout=3, max_concurrency=2)
    assert registry.registered_job_types() == ["a.type", "b.type"]
    assert registry.is_registered("a.type")
    assert not registry.is_registered("c.type")
    handler = registry.handler("a.type")
    assert handler is not None
    assert handler.timeout == timedelta(seconds=3)
    assert handler.max_concurrency == 2


def test_registering_a_type_twice_raises(registry: Registry) -> None:
    registry.register("dup", lambda job: None)
    with pytest.raises(RegistrationError, match="'dup' is already registered"):
        registry.register("dup", lambda job: None)


@pytest.mark.parametrize(
    ("job_type", "message"),
    [("", "must not be empty"), ("x" * 101, "over the limit"), (42, "must be a str"), ("a\nb", "control")],
)
def test_invalid_job_type_raises_registration_error(registry: Registry, job_type: Any, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        registry.register(job_type, lambda job: None)


def test_non_callable_handler_raises(registry: Registry) -> None:
    with pytest.raises(RegistrationError, match="must be callable"):
        registry.register("t", "not a function")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bad_max_concurrency_raises(registry: Registry, bad: Any) -> None:
    with pytest.raises(RegistrationError, match="max_concurrency"):
        registry.register("t", lambda job: None, max_concurrency=bad)


def test_bad_timeout_raises(registry: Registry) -> None:
    with pytest.raises(RegistrationError, match="timeout must be positive"):
        registry.register("t", lambda job: None, timeout=0)


def test_unregister_forgets_types_and_ignores_unknown(registry: Registry) -> None:
    registry.register("a", lambda job: None)
    registry.register_schedule_retry("a", lambda job: None)  # type: ignore[arg-type,return-value]
    registry.unregister("a", "never-registered")
    assert registry.registered_job_types() == []
    assert registry.retry_scheduler("a") is None
    registry.register("a", lambda job: None)  # can be registered again


def test_register_func_infers_type_from_pydantic_model(registry: Registry) -> None:
    def greet(payload: Greeting) -> str:
        return payload.name * payload.times

    job_type = registry.register_func(greet)
    assert job_type == job_type_of(Greeting)
    handler = registry.handler(job_type)
    assert handler is not None
    assert handler.call(new_job(job_type, "test", {"name": "ab", "times": 2})) == "abab"


def test_register_func_decodes_dataclass_and_passes_job_first(registry: Registry) -> None:
    seen: list[tuple[Job, Point]] = []

    def move(job: Job, point: Point) -> None:
        seen.append((job, point))

    job_type = registry.register_func(move)
    assert job_type == job_type_of(Point)
    job = new_job(job_type, "test", Point(1, 2))
    handler = registry.handler(job_type)
    assert handler is not None
    handler.call(job)
    assert seen == [(job, Point(1, 2))]


def test_register_func_decodes_typed_dict(registry: Registry) -> None:
    def join(pair: Pair) -> str:
        return pair["left"] + pair["right"]

    job_type = registry.register_func(join)
    assert job_type == f"{__name__}.Pair"
    handler = registry.handler(job_type)
    assert handler is not None
    assert handler.call(new_job(job_type, "test", {"left": "a", "right": "b"})) == "ab"


def test_typed_payload_that_fails_validation_raises_invalid_payload(registry: Registry) -> None:
    job_type = registry.register_func(_greet)
    handler = registry.handler(job_type)
    assert handler is not None
    with pytest.raises(InvalidPayloadError) as info:
        handler.call(new_job(job_type, "test", {"name": "x", "times": "many"}))
    first_line = str(info.value).splitlines()[0]
    assert repr(job_type) in first_line
    assert "times" in first_line
    assert "Greeting" in first_line


def _greet(payload: Greeting) -> str:
    return payload.name


def test_register_func_for_job_type_accepts_any_adaptable_type(registry: Registry) -> None:
    def total(numbers: list[int]) -> int:
        return sum(numbers)

    registry.register_func_for_job_type("sum", total)
    handler = registry.handler("sum")
    assert handler is not None
    assert handler.call(new_job("sum", "test", [1, "2", 3])) == 6


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda: None, "0 required positional parameters"),
        (lambda a, b, c: None, "3 required positional parameters"),
        (lambda job: None, "cannot be inferred"),
    ],
)
def test_register_func_rejects_unusable_signatures(registry: Registry, fn: Any, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        registry.register_func(fn)


def test_register_func_rejects_builtin_payload_types(registry: Registry) -> None:
    def handle(payload: dict[str, Any]) -> None:
        pass

    with pytest.raises(RegistrationError, match="cannot infer a job type"):
        registry.register_func(handle)


def test_two_parameters_need_job_first(registry: Registry) -> None:
    def handle(a: Point, b: Point) -> None:
        pass

    with pytest.raises(RegistrationError, match=r"first must be annotated jobqueue\.Job"):
        registry.register_func(handle)


def test_decorator_forms_register_and_return_the_function(registry: Registry) -> None:
    @registry.job()
    def greet(payload: Greeting) -> str:
        return payload.name

    @registry.job("plain", timeout=timedelta(seconds=7), max_concurrency=1)
    def plain(job: Job) -> Any:
        return job.payload

    assert greet(Greeting(name="x")) == "x"
    assert registry.registered_job_types() == sorted([job_type_of(Greeting), "plain"])
    handler = registry.handler("plain")
    assert handler is not None
    assert handler.fn is plain
    assert handler.timeout == timedelta(seconds=7)


def test_registry_is_frozen_while_a_pool_runs(registry: Registry) -> None:
    registry.register("a", lambda job: None)
    registry.freeze()
    try:
        with pytest.raises(RegistrationError, match="while worker threads run"):
            registry.register("b", lambda job: None)
        with pytest.raises(RegistrationError, match="while worker threads run"):
            registry.unregister("a")
        with pytest.raises(RegistrationError, match="while worker threads run"):
            registry.add_before_job_hook(lambda job: None)
    finally:
        registry.unfreeze()
    registry.register("b", lambda job: None)


def test_bundle_handler_registers_its_completion_job_type(registry: Registry) -> None:
    @registry.bundle_handler("invoices")
    def done(bundle: Any) -> None:
        pass

    assert registry.is_registered(BUNDLE_JOB_PREFIX + "invoices")
    assert registry.bundle_types() == ["invoices"]


def test_bundle_type_too_long_for_its_job_type_is_rejected(registry: Registry) -> None:
    longest = "b" * (100 - len(BUNDLE_JOB_PREFIX))
    registry.register_bundle_handler(longest, lambda bundle: None)
    with pytest.raises(RegistrationError, match="too long for a bundle handler"):
        registry.register_bundle_handler(longest + "x", lambda bundle: None)


def test_module_functions_act_on_the_default_registry() -> None:
    jobworker.register("unit.module-fn", lambda job: None)
    try:
        assert jobworker.is_registered("unit.module-fn")
        assert "unit.module-fn" in jobworker.registered_job_types()
        assert jobworker.default_registry().is_registered("unit.module-fn")
    finally:
        jobworker.unregister("unit.module-fn")
    assert not jobworker.is_registered("unit.module-fn")
