"""The registry: which function runs each job type, with its hooks and retry schedulers.

State lives in :class:`Registry` objects; the module functions of :mod:`jobworker`
act on a default one. A registry is frozen while a worker pool runs on it:
every change then raises RegistrationError.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, Unpack

from jobqueue import InvalidJobError, Job, RegistrationError
from jobqueue._constructors import check_name
from jobworker._awaitables import is_async_callable
from jobworker._bundles import BundleHandler, bundle_call, bundle_job_type
from jobworker._periodic import PeriodicOptions, PeriodicSpec, periodic_spec
from jobworker._schedules import Schedule
from jobworker._settings import Duration, to_timedelta
from jobworker._typed import handler_shape, inferred_job_type, typed_call

#: Runs before each attempt of a job (an ``async def`` one is awaited).
BeforeJobHook = Callable[[Job], Awaitable[None] | None]
#: Runs after each attempt with the attempt's error (None on success); may be ``async def``.
AfterJobHook = Callable[[Job, BaseException | None], Awaitable[None] | None]
#: Returns when the next attempt of a failed job may start (a timezone-aware datetime);
#: may be ``async def``.
RetryScheduler = Callable[[Job], datetime | Awaitable[datetime]]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered job type: ``call(job)`` runs ``fn`` (decoding a typed payload first)."""

    job_type: str
    fn: Callable[..., Any]
    call: Callable[[Job], Any]
    timeout: timedelta | None = None
    max_concurrency: int | None = None
    is_async: bool = False  # ``fn`` is ``async def``: the pool awaits it on its event loop


def _check_type(job_type: Any) -> str:
    try:
        return check_name(job_type, "job type")
    except InvalidJobError as exc:
        raise RegistrationError(str(exc)) from exc


def _check_callable(fn: Any, what: str) -> None:
    if not callable(fn):
        raise RegistrationError(f"{what} must be callable, got {type(fn).__name__}")


def _check_limits(timeout: Duration | None, max_concurrency: int | None) -> timedelta | None:
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
    ):
        raise RegistrationError(f"max_concurrency must be a positive int or None, got {max_concurrency!r}")
    if timeout is None:
        return None
    try:
        return to_timedelta(timeout, "timeout")
    except ValueError as exc:
        raise RegistrationError(str(exc)) from exc


#: Retries of a bundle completion job unless its registration says otherwise.
DEFAULT_BUNDLE_HANDLER_RETRIES = 3


class Registry:
    """Job types and their handlers, hooks and retry schedulers. Thread-safe.

    Hooks run in registration order, the global ones before those of the job
    type. Every change raises RegistrationError while a worker pool runs on
    this registry (finish its threads first).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[str, Handler] = {}
        self._bundle_types: dict[str, str] = {}  # completion job type -> bundle type
        self._bundle_retries: dict[str, int] = {}  # bundle type -> completion job max_retry_count
        self._before: dict[str | None, list[BeforeJobHook]] = {}
        self._after: dict[str | None, list[AfterJobHook]] = {}
        self._schedulers: dict[str, RetryScheduler] = {}
        self._periodic: dict[str, PeriodicSpec] = {}
        self._pools = 0

    # -- handlers ---------------------------------------------------------------------------

    def register(
        self,
        job_type: str,
        fn: Callable[[Job], Any],
        *,
        timeout: Duration | None = None,
        max_concurrency: int | None = None,
        retry: RetryScheduler | None = None,
    ) -> None:
        """Run ``fn(job)`` for jobs of ``job_type``; its return value (JSON-serialisable, or a
        model/dataclass) becomes the job's result. ``fn`` may be ``async def``: it is then
        awaited on the pool's event loop (see ``WorkerPool.start_threads``).

        ``timeout`` overrides the pool's job_timeout for this type; ``max_concurrency``
        caps how many jobs of this type one pool runs at a time; ``retry`` (a
        ``jobworker.retry`` strategy or any retry scheduler) decides when failed jobs
        of this type run again, as :meth:`register_schedule_retry` does. Raises
        RegistrationError for a duplicate or invalid type, a non-callable ``fn``, or
        while a pool runs.
        """
        job_type = _check_type(job_type)
        _check_callable(fn, "fn")
        limit = _check_limits(timeout, max_concurrency)
        self._add(Handler(job_type, fn, fn, limit, max_concurrency, is_async_callable(fn)), retry=retry)

    def register_func(
        self,
        fn: Callable[..., Any],
        *,
        timeout: Duration | None = None,
        max_concurrency: int | None = None,
        retry: RetryScheduler | None = None,
    ) -> str:
        """Register a typed ``fn(payload: T)`` or ``fn(job: Job, payload: T)`` for the job type
        ``jobqueue.job_type_of(T)`` and return that type.

        Payloads are validated into T (pydantic model, dataclass or TypedDict) before
        the call; one that fails validation ends the job failed, without retries.
        """
        _check_callable(fn, "fn")
        shape = handler_shape(fn)
        job_type = inferred_job_type(fn, shape)
        limit = _check_limits(timeout, max_concurrency)
        call = typed_call(job_type, fn, shape)
        self._add(Handler(job_type, fn, call, limit, max_concurrency, is_async_callable(fn)), retry=retry)
        return job_type

    def register_func_for_job_type(
        self,
        job_type: str,
        fn: Callable[..., Any],
        *,
        timeout: Duration | None = None,
        max_concurrency: int | None = None,
        retry: RetryScheduler | None = None,
    ) -> None:
        """As :meth:`register_func`, for an explicit ``job_type``; T may be any type a pydantic
        TypeAdapter validates (``fn(job: Job)`` alone is registered as by :meth:`register`)."""
        job_type = _check_type(job_type)
        _check_callable(fn, "fn")
        shape = handler_shape(fn)
        limit = _check_limits(timeout, max_concurrency)
        call = typed_call(job_type, fn, shape)
        self._add(Handler(job_type, fn, call, limit, max_concurrency, is_async_callable(fn)), retry=retry)

    def job(
        self,
        job_type: str | None = None,
        *,
        timeout: Duration | None = None,
        max_concurrency: int | None = None,
        retry: RetryScheduler | None = None,
    ) -> Callable[[F], F]:
        """Decorator: ``@registry.job()`` infers the type from the payload annotation,
        ``@registry.job("type")`` names it. Returns the function unchanged."""

        def decorate(fn: F) -> F:
            if job_type is None:
                self.register_func(fn, timeout=timeout, max_concurrency=max_concurrency, retry=retry)
            else:
                self.register_func_for_job_type(
                    job_type, fn, timeout=timeout, max_concurrency=max_concurrency, retry=retry
                )
            return fn

        return decorate

    def register_bundle_handler(
        self,
        bundle_type: str,
        fn: BundleHandler,
        *,
        timeout: Duration | None = None,
        max_concurrency: int | None = None,
        max_retry_count: int = DEFAULT_BUNDLE_HANDLER_RETRIES,
    ) -> None:
        """Run ``fn(bundle)`` exactly once per completed bundle of ``bundle_type``, on one
        worker, even if none ran when the bundle completed (retry rules of a job apply,
        with ``max_retry_count`` retries).

        ``fn`` gets the bundle as it was when its last job stopped (the completion job
        carries it, so a bundle deleted since, for example by a go-jobqueue listener,
        still reaches the handler). Registers a job handler for the type
        ``BUNDLE_JOB_PREFIX + bundle_type``; a starting pool declares the bundle type
        and retry count to the database (``jobqueue bundle-handlers`` lists and removes
        declarations). Raises RegistrationError when that job type would exceed 100
        characters or ``max_retry_count`` is not an int >= 0.
        """
        job_type = bundle_job_type(bundle_type)
        _check_callable(fn, "fn")
        limit = _check_limits(timeout, max_concurrency)
        if isinstance(max_retry_count, bool) or not isinstance(max_retry_count, int) or max_retry_count < 0:
            raise RegistrationError(f"max_retry_count must be an int >= 0, got {max_retry_count!r}")
        handler = Handler(
            job_type, fn, bundle_call(bundle_type, fn), limit, max_concurrency, is_async_callable(fn)
        )
        self._add(handler, bundle_type)
        with self._lock:
            self._bundle_retries[bundle_type] = max_retry_count

    def bundle_handler(
        self,
        bundle_type: str,
        *,
        timeout: Duration | None = None,
        max_concurrency: int | None = None,
        max_retry_count: int = DEFAULT_BUNDLE_HANDLER_RETRIES,
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`register_bundle_handler`."""

        def decorate(fn: F) -> F:
            self.register_bundle_handler(
                bundle_type,
                fn,
                timeout=timeout,
                max_concurrency=max_concurrency,
                max_retry_count=max_retry_count,
            )
            return fn

        return decorate

    def _add(
        self, handler: Handler, bundle_type: str | None = None, retry: RetryScheduler | None = None
    ) -> None:
        if retry is not None:
            _check_callable(retry, "retry")
        with self._lock:
            self._check_not_running("register job type", handler.job_type)
            if handler.job_type in self._handlers:
                raise RegistrationError(
                    f"job type {handler.job_type!r} is already registered "
                    f"(to {_name(self._handlers[handler.job_type].fn)}); unregister it first"
                )
            if retry is not None and handler.job_type in self._schedulers:
                raise RegistrationError(f"job type {handler.job_type!r} already has a retry scheduler")
            self._handlers[handler.job_type] = handler
            if retry is not None:
                self._schedulers[handler.job_type] = retry
            if bundle_type is not None:
                self._bundle_types[handler.job_type] = bundle_type

    def unregister(self, *job_types: str) -> None:
        """Forget these job types with their per-type hooks and retry schedulers.
        Unknown types are ignored. Raises RegistrationError while a pool runs."""
        with self._lock:
            self._check_not_running("unregister job types", ", ".join(map(repr, job_types)))
            for job_type in job_types:
                self._handlers.pop(job_type, None)
                bundle_type = self._bundle_types.pop(job_type, None)
                if bundle_type is not None:
                    self._bundle_retries.pop(bundle_type, None)
                self._before.pop(job_type, None)
                self._after.pop(job_type, None)
                self._schedulers.pop(job_type, None)
            for name in [n for n, spec in self._periodic.items() if spec.job_type in job_types]:
                del self._periodic[name]

    def is_registered(self, job_type: str) -> bool:
        """True when ``job_type`` has a handler."""
        with self._lock:
            return job_type in self._handlers

    def registered_job_types(self) -> list[str]:
        """The registered job types, sorted (bundle completion types included)."""
        with self._lock:
            return sorted(self._handlers)

    def handler(self, job_type: str) -> Handler | None:
        """The handler of ``job_type``, or None."""
        with self._lock:
            return self._handlers.get(job_type)

    def handlers(self) -> dict[str, Handler]:
        """A snapshot of all handlers by job type."""
        with self._lock:
            return dict(self._handlers)

    def bundle_types(self) -> list[str]:
        """The bundle types that have a durable handler, sorted."""
        with self._lock:
            return sorted(self._bundle_types.values())

    def bundle_handler_retries(self) -> dict[str, int]:
        """The bundle types that have a durable handler, each with the ``max_retry_count``
        of its completion jobs."""
        with self._lock:
            return dict(sorted(self._bundle_retries.items()))

    # -- hooks and retry schedulers ---------------------------------------------------------

    def add_before_job_hook(self, fn: BeforeJobHook, job_type: str | None = None) -> None:
        """Call ``fn(job)`` before every attempt (of ``job_type`` only, if given). A hook that
        raises is logged and reported to on_error; the job runs anyway."""
        self._add_hook(self._before, fn, job_type)

    def add_after_job_hook(self, fn: AfterJobHook, job_type: str | None = None) -> None:
        """Call ``fn(job, error)`` after every attempt (``error`` None on success). A hook that
        raises is logged and reported to on_error; the outcome stands."""
        self._add_hook(self._after, fn, job_type)

    def remove_before_job_hook(self, fn: BeforeJobHook, job_type: str | None = None) -> None:
        """Remove a hook added by :meth:`add_before_job_hook` (no-op if absent)."""
        self._remove_hook(self._before, fn, job_type)

    def remove_after_job_hook(self, fn: AfterJobHook, job_type: str | None = None) -> None:
        """Remove a hook added by :meth:`add_after_job_hook` (no-op if absent)."""
        self._remove_hook(self._after, fn, job_type)

    def before_job_hooks(self, job_type: str) -> list[BeforeJobHook]:
        """The before hooks for ``job_type``: global ones first, in registration order."""
        with self._lock:
            return [*self._before.get(None, ()), *self._before.get(job_type, ())]

    def after_job_hooks(self, job_type: str) -> list[AfterJobHook]:
        """The after hooks for ``job_type``: global ones first, in registration order."""
        with self._lock:
            return [*self._after.get(None, ()), *self._after.get(job_type, ())]

    def register_schedule_retry(self, job_type: str, fn: RetryScheduler) -> None:
        """Decide when failed jobs of ``job_type`` are retried: ``fn(job)`` returns a
        timezone-aware datetime. A scheduler that raises or returns anything else ends
        the job failed with that error. Without one, retries back off exponentially."""
        job_type = _check_type(job_type)
        _check_callable(fn, "retry scheduler")
        with self._lock:
            self._check_not_running("register a retry scheduler for", repr(job_type))
            if job_type in self._schedulers:
                raise RegistrationError(f"job type {job_type!r} already has a retry scheduler")
            self._schedulers[job_type] = fn

    def retry_scheduler(self, job_type: str) -> RetryScheduler | None:
        """The retry scheduler of ``job_type``, or None for the default backoff."""
        with self._lock:
            return self._schedulers.get(job_type)

    def _add_hook(self, hooks: dict[str | None, list[Any]], fn: Any, job_type: str | None) -> None:
        _check_callable(fn, "hook")
        if job_type is not None:
            job_type = _check_type(job_type)
        with self._lock:
            self._check_not_running("add a job hook", "")
            hooks.setdefault(job_type, []).append(fn)

    def _remove_hook(self, hooks: dict[str | None, list[Any]], fn: Any, job_type: str | None) -> None:
        with self._lock:
            self._check_not_running("remove a job hook", "")
            registered = hooks.get(job_type, [])
            if fn in registered:
                registered.remove(fn)

    # -- periodic jobs ----------------------------------------------------------------------

    def register_periodic(
        self,
        name: str,
        schedule: str | Schedule,
        job_type: str,
        **options: Unpack[PeriodicOptions],
    ) -> None:
        """Enqueue a job of ``job_type`` (registered here or in another process) at every tick
        of ``schedule``, exactly once per tick across all worker processes running it.

        ``schedule``: a crontab string (five fields, or @hourly, @daily, @weekly,
        @monthly) or :func:`jobworker.every` / :func:`~jobworker.daily` /
        :func:`~jobworker.weekly` / :func:`~jobworker.monthly`, on the wall clock of
        ``timezone``. ``name`` identifies the schedule across processes. ``catch_up``
        ("latest", "all" or "none") says what happens to ticks missed while no worker
        ran. ``enabled`` is the state a new schedule is stored with. ``payload``,
        ``priority`` and ``max_retry_count`` are those of each enqueued job (the keywords
        are :class:`PeriodicOptions`). Raises RegistrationError for bad arguments, a name
        registered twice, or while a pool runs.
        """
        spec = periodic_spec(name, schedule, job_type, **options)
        with self._lock:
            self._check_not_running("register periodic", repr(spec.name))
            if spec.name in self._periodic:
                raise RegistrationError(f"periodic {spec.name!r} is already registered")
            self._periodic[spec.name] = spec

    def periodic(
        self,
        schedule: str | Schedule,
        *,
        name: str | None = None,
        **options: Unpack[PeriodicOptions],
    ) -> Callable[[F], F]:
        """Decorator: run the decorated handler periodically (see :meth:`register_periodic`).

        Put it above ``@job(...)``: the schedule's job type is the handler's. A function
        not registered yet is registered first, for the job type ``name`` if given, else
        ``"module.qualname"`` of the function. ``name`` defaults to the job type.
        """

        def decorate(fn: F) -> F:
            job_type = self._job_type_of(fn)
            if job_type is None:
                job_type = name or f"{fn.__module__}.{fn.__qualname__}"
                self.register_func_for_job_type(job_type, fn)
            self.register_periodic(name or job_type, schedule, job_type, **options)
            return fn

        return decorate

    def _job_type_of(self, fn: Callable[..., Any]) -> str | None:
        with self._lock:
            for handler in self._handlers.values():
                if handler.fn is fn:
                    return handler.job_type
        return None

    def periodic_specs(self) -> list[PeriodicSpec]:
        """The registered schedules, by name."""
        with self._lock:
            return [self._periodic[n] for n in sorted(self._periodic)]

    # -- pools ------------------------------------------------------------------------------

    def freeze(self) -> None:
        """Called by a starting pool: changes raise until the matching :meth:`unfreeze`."""
        with self._lock:
            self._pools += 1

    def unfreeze(self) -> None:
        """Called by a stopped pool."""
        with self._lock:
            self._pools = max(0, self._pools - 1)

    def _check_not_running(self, action: str, what: str) -> None:
        if self._pools:
            target = f" {what}" if what else ""
            raise RegistrationError(
                f"cannot {action}{target} while worker threads run on this registry; "
                "register everything before start_threads(), or call finish_threads() first"
            )


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
