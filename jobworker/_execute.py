"""Running one attempt of a handler: hooks, the call, the result's JSON encoding.

:func:`run_attempt` is the one attempt runner: worker threads, :func:`jobworker.do_job`
and the test modes of jobworker_pg (``drain``, ``synchronous_jobs``) all go through it,
so a handler and its hooks see the same job context wherever they run.
:func:`run_attempt_async` is its twin for the pool's event loop.

Both drive the same steps (:func:`_attempt_steps`, a generator): where a handler, a
hook or a retry scheduler hands back an awaitable, the steps yield it and get its
value (or its exception) back. The async driver awaits it on the running loop; the
sync driver runs it to completion on a loop of its own (an async hook of a sync job,
an async handler in ``do_job``), and costs nothing when nothing is awaitable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from jobqueue import AttemptError, Job
from jobqueue._payload import encode_json
from jobworker._awaitables import is_async_callable, run_awaitable
from jobworker._context import use_context
from jobworker._database import Outcome
from jobworker._errors import ErrorReporter, InvalidPayloadError, JobTimeoutError, Snooze
from jobworker._log import job_extra
from jobworker._observer import Observers
from jobworker._outcomes import error_data, error_message, error_type_name, settle
from jobworker._registry import Registry, RetryScheduler
from jobworker._slots import Run, RunState

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Attempt:
    """What one attempt of a handler produced."""

    result_json: str | None  # the result as JSON text (None: JSON null, or an error)
    error: BaseException | None  # what the handler raised, None on success
    outcome: Outcome | None  # what to write for a claimed job (None for a job run without a claim)


#: Says whether the handler of a run returned in time (its result counts); the pool's
#: :meth:`Slots.handler_returned`. A run without one always counts.
InTime = Callable[[Run], bool]


T = TypeVar("T")
#: Steps that yield what must be awaited, are sent its value back, and return a T.
Awaits = Generator[Awaitable[Any], Any, T]
#: The steps of one attempt.
Steps = Awaits["Attempt | None"]


def run_attempt(
    registry: Registry,
    run: Run,
    report: ErrorReporter,
    in_time: InTime | None = None,
    observers: Observers | None = None,
) -> Attempt | None:
    """Run one attempt of ``run.job``: before hooks, the handler, after hooks, all with the
    run's :class:`JobContext` current; for a claimed job, also settle its outcome
    (retry rules of ``registry``).

    When ``in_time`` says the result no longer counts (the attempt timed out, or the pool
    stopped hard), the late result is discarded, the after hooks see the timeout error
    if the attempt timed out, and None is returned. Never raises for the handler or a hook.
    """
    steps = _attempt_steps(registry, run, report, in_time, observers)
    try:
        awaitable = next(steps)
        while True:
            try:
                value = run_awaitable(awaitable)
            except BaseException as exc:
                awaitable = steps.throw(exc)
            else:
                awaitable = steps.send(value)
    except StopIteration as stop:
        result: Attempt | None = stop.value
        return result


async def run_attempt_async(
    registry: Registry,
    run: Run,
    report: ErrorReporter,
    in_time: InTime | None = None,
    observers: Observers | None = None,
) -> Attempt | None:
    """:func:`run_attempt` on the running event loop: what the handler, hooks or retry
    scheduler return to be awaited is awaited here. A cancellation of the calling task
    (the pool's, on timeout) raises ``CancelledError`` inside the handler, and ends the
    attempt as the handler's error."""
    steps = _attempt_steps(registry, run, report, in_time, observers)
    try:
        awaitable = next(steps)
        while True:
            try:
                value = await awaitable
            except BaseException as exc:
                awaitable = steps.throw(exc)
            else:
                awaitable = steps.send(value)
    except StopIteration as stop:
        result: Attempt | None = stop.value
        return result


def _attempt_steps(
    registry: Registry, run: Run, report: ErrorReporter, in_time: InTime | None, observers: Observers | None
) -> Steps:
    # The hot path (no hooks, a sync handler that succeeds) creates no generator but this one.
    job = run.job
    with use_context(run.context):
        before = registry.before_job_hooks(job.type)
        if before:
            yield from _run_hooks(before, "before_job", (job,), job, report)
        if observers:  # metrics and tracing (a pool's observers) see the handler's call
            started = time.monotonic()
            states = observers.attempt_started(job)
        try:
            result = run.handler.call(job)
            if _is_awaitable(result):
                result = yield result
            result_json, error = encode_json(result, "result"), None
        except GeneratorExit:  # the steps themselves are being closed, not the handler failing
            raise
        except BaseException as exc:  # KeyboardInterrupt, CancelledError too: the thread or task lives on
            result_json, error = None, exc
        if observers:
            observers.attempt_ended(job, states, error, time.monotonic() - started)
        if in_time is not None and not in_time(run):
            if not isinstance(error, asyncio.CancelledError):  # a cancelled task is ours: no news
                logger.warning(
                    "discarding the late %s of job %s: the attempt already ended (%s)",
                    "result" if error is None else "error",
                    job.id,
                    run.state.value,
                    extra=job_extra(job, "discarded"),
                )
            if run.state is RunState.TIMED_OUT:
                timeout = JobTimeoutError(timeout_message(run))
                yield from _run_hooks(
                    registry.after_job_hooks(job.type), "after_job", (job, timeout), job, report
                )
            return None
        after = registry.after_job_hooks(job.type)
        if after:
            yield from _run_hooks(after, "after_job", (job, error), job, report)
    outcome = None
    if job.claim_token is not None:
        scheduler = registry.retry_scheduler(job.type)
        if error is not None and scheduler is not None:
            scheduler = yield from _awaited_scheduler(scheduler, job, error)
        outcome = settle(job, result_json, error, scheduler)
    return Attempt(result_json, error, outcome)


def record_on_job(job: Job, attempt: Attempt) -> None:
    """Set the attempt's result or error on ``job`` itself (as a stored job would show it),
    for callers that hand the job back: do_job, drain."""
    error = attempt.error
    if error is None:
        job.result = None if attempt.result_json is None else json.loads(attempt.result_json)
        job.error_msg = None
        job.error_data = None
        return
    job.result = None
    job.error_msg = error_message(error)
    job.error_data = error_data(error)
    if job.stopped_at is not None:
        job.errors = [
            *job.errors,
            AttemptError(
                attempt=job.attempt, at=job.stopped_at, message=job.error_msg, type=error_type_name(error)
            ),
        ]


def record_snooze_on_job(job: Job, snooze: Snooze) -> None:
    """Record a :class:`jobworker.Snooze` on ``job`` as save_outcomes does in the database:
    due again after the delay, its attempt given back, the snooze in the history."""
    now = datetime.now(UTC)
    job.errors = [
        *job.errors,
        AttemptError(attempt=job.attempt, at=now, message=str(snooze), type="jobworker.Snooze"),
    ]
    job.attempt -= 1
    job.started_at = None
    job.start_at = now + snooze.delay


def timeout_message(run: Run) -> str:
    """The error message of an attempt that ran past its timeout."""
    return f"job {run.job.id} of type {run.job.type!r} ran longer than its timeout of {run.timeout}"


def _is_awaitable(value: object) -> bool:
    """Whether ``value`` must be awaited (a coroutine, a future): :func:`inspect.isawaitable`
    without its ABC check, which costs more than the rest of the hot path's tests."""
    return value is not None and hasattr(type(value), "__await__")


def _run_hooks(
    hooks: list[Any], kind: str, args: tuple[Any, ...], job: Job, report: ErrorReporter
) -> Awaits[None]:
    """Call each hook with ``args`` (awaiting an async one); failures are reported, never raised."""
    for hook in hooks:
        try:
            value = hook(*args)
            if _is_awaitable(value):
                yield value
        except Exception as exc:
            logger.warning("%s hook failed for job %s", kind, job.id, extra=job_extra(job, "hook-failed"))
            report(exc, f"{kind} hook {getattr(hook, '__qualname__', hook)!r} for job {job.id}")


def _awaited_scheduler(scheduler: RetryScheduler, job: Job, error: BaseException) -> Awaits[RetryScheduler]:
    """An async retry scheduler awaited ahead, as settle() is sync: a scheduler that returns
    its answer, or raises its error. Sync ones, and attempts that will not retry, pass."""
    if (
        not is_async_callable(scheduler)
        or isinstance(error, InvalidPayloadError)
        or job.attempt > job.max_retry_count
    ):
        return scheduler
    job.error_msg = error_message(error)  # as settle() does, so the scheduler can read it
    try:
        when: datetime = yield scheduler(job)  # type: ignore[misc]
    except Exception as exc:
        failure = exc

        def fail(_: Job) -> datetime:
            raise failure

        return fail
    return lambda _: when
