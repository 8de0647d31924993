"""The default registry and pool, and the module functions of :mod:`jobworker` over them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, Unpack

from jobqueue import Job
from jobworker._bundles import BundleHandler
from jobworker._database import WorkerDatabase
from jobworker._errors import ErrorCallback
from jobworker._observer import WorkerObserver
from jobworker._periodic import PeriodicOptions
from jobworker._pool import WorkerPool
from jobworker._queue_plan import QueueSpec
from jobworker._registry import (
    DEFAULT_BUNDLE_HANDLER_RETRIES,
    AfterJobHook,
    BeforeJobHook,
    Registry,
    RetryScheduler,
)
from jobworker._schedules import Schedule
from jobworker._settings import Duration, SettingsChanges, WorkerSettings

F = TypeVar("F", bound=Callable[..., Any])

_registry = Registry()
_pool = WorkerPool(registry=_registry, name="jobworker")


def default_registry() -> Registry:
    """The registry the module functions act on."""
    return _registry


def default_pool() -> WorkerPool:
    """The pool the module functions act on (it uses :func:`default_registry`)."""
    return _pool


def register(
    job_type: str,
    fn: Callable[[Job], Any],
    *,
    timeout: Duration | None = None,
    max_concurrency: int | None = None,
    retry: RetryScheduler | None = None,
) -> None:
    """Run ``fn(job)`` for jobs of ``job_type``; see :meth:`Registry.register`."""
    _registry.register(job_type, fn, timeout=timeout, max_concurrency=max_concurrency, retry=retry)


def register_func(
    fn: Callable[..., Any],
    *,
    timeout: Duration | None = None,
    max_concurrency: int | None = None,
    retry: RetryScheduler | None = None,
) -> str:
    """Register a typed function for the job type of its payload class; see
    :meth:`Registry.register_func`. Returns the job type."""
    return _registry.register_func(fn, timeout=timeout, max_concurrency=max_concurrency, retry=retry)


def register_func_for_job_type(
    job_type: str,
    fn: Callable[..., Any],
    *,
    timeout: Duration | None = None,
    max_concurrency: int | None = None,
    retry: RetryScheduler | None = None,
) -> None:
    """Register a typed function for ``job_type``; see :meth:`Registry.register_func_for_job_type`."""
    _registry.register_func_for_job_type(
        job_type, fn, timeout=timeout, max_concurrency=max_concurrency, retry=retry
    )


def job(
    job_type: str | None = None,
    *,
    timeout: Duration | None = None,
    max_concurrency: int | None = None,
    retry: RetryScheduler | None = None,
) -> Callable[[F], F]:
    """Decorator registering a (typed) function; see :meth:`Registry.job`."""
    return _registry.job(job_type, timeout=timeout, max_concurrency=max_concurrency, retry=retry)


def register_bundle_handler(
    bundle_type: str,
    fn: BundleHandler,
    *,
    timeout: Duration | None = None,
    max_concurrency: int | None = None,
    max_retry_count: int = DEFAULT_BUNDLE_HANDLER_RETRIES,
) -> None:
    """Run ``fn(bundle)`` once per completed bundle; see :meth:`Registry.register_bundle_handler`."""
    _registry.register_bundle_handler(
        bundle_type, fn, timeout=timeout, max_concurrency=max_concurrency, max_retry_count=max_retry_count
    )


def bundle_handler(
    bundle_type: str,
    *,
    timeout: Duration | None = None,
    max_concurrency: int | None = None,
    max_retry_count: int = DEFAULT_BUNDLE_HANDLER_RETRIES,
) -> Callable[[F], F]:
    """Decorator form of :func:`register_bundle_handler`."""
    return _registry.bundle_handler(
        bundle_type, timeout=timeout, max_concurrency=max_concurrency, max_retry_count=max_retry_count
    )


def register_periodic(
    name: str,
    schedule: str | Schedule,
    job_type: str,
    **options: Unpack[PeriodicOptions],
) -> None:
    """Enqueue a job of ``job_type`` at every tick of ``schedule``, once per tick across all
    workers; see :meth:`Registry.register_periodic`."""
    _registry.register_periodic(name, schedule, job_type, **options)


def periodic(
    schedule: str | Schedule,
    *,
    name: str | None = None,
    **options: Unpack[PeriodicOptions],
) -> Callable[[F], F]:
    """Decorator: run the handler at every tick of ``schedule``; see :meth:`Registry.periodic`."""
    return _registry.periodic(schedule, name=name, **options)


def unregister(*job_types: str) -> None:
    """Forget job types; see :meth:`Registry.unregister`."""
    _registry.unregister(*job_types)


def is_registered(job_type: str) -> bool:
    """True when ``job_type`` has a handler."""
    return _registry.is_registered(job_type)


def registered_job_types() -> list[str]:
    """The registered job types, sorted."""
    return _registry.registered_job_types()


def register_schedule_retry(job_type: str, fn: RetryScheduler) -> None:
    """Decide when failed jobs of ``job_type`` retry; see :meth:`Registry.register_schedule_retry`."""
    _registry.register_schedule_retry(job_type, fn)


def add_before_job_hook(fn: BeforeJobHook, job_type: str | None = None) -> None:
    """Call ``fn(job)`` before every attempt (of ``job_type`` only, if given)."""
    _registry.add_before_job_hook(fn, job_type)


def add_after_job_hook(fn: AfterJobHook, job_type: str | None = None) -> None:
    """Call ``fn(job, error)`` after every attempt (of ``job_type`` only, if given)."""
    _registry.add_after_job_hook(fn, job_type)


def remove_before_job_hook(fn: BeforeJobHook, job_type: str | None = None) -> None:
    """Remove a before hook."""
    _registry.remove_before_job_hook(fn, job_type)


def remove_after_job_hook(fn: AfterJobHook, job_type: str | None = None) -> None:
    """Remove an after hook."""
    _registry.remove_after_job_hook(fn, job_type)


def configure(**changes: Unpack[SettingsChanges]) -> WorkerSettings:
    """Change the default pool's settings; see :meth:`WorkerPool.configure`."""
    return _pool.configure(**changes)


def add_observer(observer: WorkerObserver) -> None:
    """Add ``observer`` to the default pool (see :meth:`WorkerPool.add_observer`)."""
    _pool.add_observer(observer)


def remove_observer(observer: WorkerObserver) -> None:
    """Remove ``observer`` from the default pool."""
    _pool.remove_observer(observer)


def on_error(callback: ErrorCallback | None) -> None:
    """Call ``callback(exc)`` for errors outside handlers; see :meth:`WorkerPool.on_error`."""
    _pool.on_error(callback)


def set_database(database: WorkerDatabase | None) -> None:
    """Give the default pool its database (``jobworker_pg.init_job_queue`` does this)."""
    _pool.set_database(database)


def start_threads(n: int, *, queues: QueueSpec = None, async_concurrency: int | None = None) -> None:
    """Start ``n`` worker threads taking jobs from ``queues`` (None: ``"default"``; a list:
    strict order; a dict: weights), and an event loop for async handlers running up to
    ``async_concurrency`` at once; see :meth:`WorkerPool.start_threads`."""
    _pool.start_threads(n, queues=queues, async_concurrency=async_concurrency)


def finish_threads(timeout: Duration | None = None) -> bool:
    """Finish in-flight jobs and stop; see :meth:`WorkerPool.finish_threads`."""
    return _pool.finish_threads(timeout)


def stop_threads() -> None:
    """Stop without waiting for handlers; see :meth:`WorkerPool.stop_threads`."""
    _pool.stop_threads()


def start_polling_available_jobs(interval: Duration) -> None:
    """Also look for jobs every ``interval``; see :meth:`WorkerPool.start_polling_available_jobs`."""
    _pool.start_polling_available_jobs(interval)


def stop_polling_available_jobs() -> None:
    """Look for jobs only when woken up."""
    _pool.stop_polling_available_jobs()


def do_job(job: Job) -> Job:
    """Run ``job`` once, inline, with its registered function and hooks, without any database.

    Sets ``job.result`` (the decoded JSON value) or ``job.error_msg`` /
    ``job.error_data`` / ``job.errors``, plus ``attempt``, ``started_at`` and
    ``stopped_at``, and returns the same job. A failing handler does not raise
    (a KeyboardInterrupt is recorded, then re-raised). The timeout is not
    enforced; the context's deadline is informational. Raises RegistrationError
    when no handler is registered for ``job.type``.
    """
    return _pool.do_job(job)


def run_job_inline(job: Job) -> tuple[Job, BaseException | None]:
    """:func:`do_job`, also returning the handler's exception (None on success), for callers
    that re-raise it (synchronous test mode). Never raises for a handler failure."""
    return _pool.run_job_inline(job)
