"""Typed handlers: read the payload type from a function's signature and decode payloads into it.

A typed handler is ``fn(payload: T)`` or ``fn(job: Job, payload: T)`` where T is
a pydantic model, a dataclass, a TypedDict (``typing_extensions.TypedDict`` on
Python < 3.12, as pydantic requires) or, with an explicit job type, any type a
pydantic ``TypeAdapter`` accepts. The adapter is built once, at registration.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from jobqueue import InvalidJobError, Job, RegistrationError, job_type_of
from jobworker._errors import InvalidPayloadError

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(frozen=True, slots=True)
class HandlerShape:
    """What a handler function takes: the Job, a payload of ``payload_type``, or both."""

    payload_type: Any  # None when the function takes only the job
    takes_job: bool


def _describe(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def handler_shape(fn: Callable[..., Any]) -> HandlerShape:
    """Inspect ``fn``: one required positional parameter (the payload, or the job when it is
    annotated ``Job`` or not annotated), or two (``Job`` then the payload).

    Raises RegistrationError for any other shape or unresolvable annotations.
    """
    name = _describe(fn)
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, ValueError, SyntaxError) as exc:
        raise RegistrationError(f"cannot read the signature of {name}: {exc}") from exc
    required = []
    for param in signature.parameters.values():
        if param.default is not inspect.Parameter.empty:
            continue
        if param.kind in _POSITIONAL:
            required.append(param)
        elif param.kind is inspect.Parameter.KEYWORD_ONLY:
            raise RegistrationError(f"{name} has a required keyword-only parameter {param.name!r}")
    if len(required) == 1:
        annotation = required[0].annotation
        if annotation is inspect.Parameter.empty or annotation is Job:
            return HandlerShape(payload_type=None, takes_job=True)
        return HandlerShape(payload_type=annotation, takes_job=False)
    if len(required) == 2:
        first, second = required
        if first.annotation is not Job:
            raise RegistrationError(
                f"{name} takes two parameters; the first must be annotated jobqueue.Job "
                f"(got {first.annotation!r}) and the second the payload type"
            )
        if second.annotation is inspect.Parameter.empty:
            raise RegistrationError(f"{name}: annotate the payload parameter {second.name!r} with its type")
        return HandlerShape(payload_type=second.annotation, takes_job=True)
    raise RegistrationError(
        f"{name} must take the payload (fn(payload: T)), the job (fn(job: Job)) or both "
        f"(fn(job: Job, payload: T)); it has {len(required)} required positional parameters"
    )


def inferred_job_type(fn: Callable[..., Any], shape: HandlerShape) -> str:
    """The job type named by the payload class of a typed handler (``jobqueue.job_type_of``)."""
    if shape.payload_type is None:
        raise RegistrationError(
            f"{_describe(fn)} takes no typed payload, so its job type cannot be inferred; "
            "give the job type explicitly"
        )
    if not isinstance(shape.payload_type, type):
        raise RegistrationError(
            f"cannot infer a job type from the payload annotation {shape.payload_type!r} of "
            f"{_describe(fn)}: use a pydantic model, dataclass or TypedDict, or give the job type"
        )
    try:
        return job_type_of(shape.payload_type)
    except InvalidJobError as exc:
        raise RegistrationError(f"{_describe(fn)}: {exc}") from exc


def _type_name(payload_type: Any) -> str:
    return getattr(payload_type, "__qualname__", None) or repr(payload_type)


def _summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "payload"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def typed_call(job_type: str, fn: Callable[..., Any], shape: HandlerShape) -> Callable[[Job], Any]:
    """A ``call(job)`` that decodes the payload for ``fn`` and calls it.

    The TypeAdapter is built here, once. A payload that fails validation raises
    InvalidPayloadError whose first line names the job type and the problem.
    """
    if shape.payload_type is None:
        return fn
    payload_type = shape.payload_type
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(payload_type)
    except Exception as exc:  # pydantic raises several kinds for types it cannot handle
        raise RegistrationError(
            f"cannot validate payloads as {_type_name(payload_type)} for job type {job_type!r}: {exc}"
        ) from exc
    type_name = _type_name(payload_type)
    takes_job = shape.takes_job

    def call(job: Job) -> Any:
        try:
            payload = adapter.validate_python(job.payload)
        except ValidationError as exc:
            raise InvalidPayloadError(
                f"payload of job type {job.type!r} is not a valid {type_name}: {_summary(exc)}\n{exc}"
            ) from None
        return fn(job, payload) if takes_job else fn(payload)

    return call
