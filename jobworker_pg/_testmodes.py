"""Test modes: run jobs inline instead of storing them, or drop them.

Each mode is a context manager on a context variable, like
:func:`jobqueue.use_service`: it holds for the ``with`` block in this context
only, follows asyncio tasks created inside it and ``contextvars.copy_context()``
(a thread started plainly does not see it), and nested blocks restore the
outer mode on exit. Modes combine: inside ``synchronous_jobs()`` an
``ignore_job_type("email")`` block still drops emails and runs the rest.

Every add of :class:`PostgresService` (sync and async, with or without
``conn=``) validates the job first, exactly as without a mode, then consults
the modes:

- a job an ignore mode selects is returned as is (``created_at`` stays None)
  and never stored; a bundle is dropped only by :func:`ignore_job_bundles`,
- under :func:`synchronous_jobs` the job runs at once on the calling thread
  through :func:`jobworker.do_job` (handlers of the default registry), nothing
  is stored, and a failing handler raises :class:`jobqueue.JobFailedError` with
  the handler's exception as ``__cause__``,
- otherwise the job is stored as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, cast

import jobqueue
import jobworker
from jobqueue import Job, JobBundle, JobFailedError
from jobqueue._constructors import check_name
from jobqueue._current import NULL_SERVICE
from jobqueue._listeners import fire_job_bundle_stopped, fire_job_stopped
from jobworker_pg._inserts import checked_bundle, checked_jobs, job_params

logger = logging.getLogger(__name__)

#: Selects jobs: ``predicate(job) -> bool``.
JobPredicate = Callable[[Job], bool]
#: Selects bundles: ``predicate(bundle) -> bool``.
BundlePredicate = Callable[[JobBundle], bool]


@dataclass(frozen=True, slots=True)
class _Modes:
    synchronous: bool = False
    ignore_jobs: tuple[JobPredicate, ...] = ()
    ignore_bundles: tuple[BundlePredicate, ...] = ()


_NO_MODES = _Modes()
_modes: ContextVar[_Modes] = ContextVar("jobqueue_test_modes", default=_NO_MODES)
# Jobs seen by the add paths while a recorder is active (see record_jobs).
_recorder: ContextVar[list[Job] | None] = ContextVar("jobqueue_test_recorder", default=None)


def _always(_: object) -> bool:
    return True


@contextlib.contextmanager
def _with_modes(change: Callable[[_Modes], _Modes]) -> Iterator[None]:
    token = _modes.set(change(_modes.get()))  # applied on entering, to the modes in force then
    try:
        if jobqueue.get_service() is NULL_SERVICE:
            with jobqueue.use_service(cast(jobqueue.Service, _NoDatabaseService())):
                yield
        else:
            yield
    finally:
        _modes.reset(token)


def synchronous_jobs() -> contextlib.AbstractContextManager[None]:
    """Inside the block, adding a job runs it at once, inline, instead of storing it.

    ``jobqueue.add`` runs the job through :func:`jobworker.do_job` (no database
    row), fires the job-stopped listeners and returns the job with its
    ``result``; when the handler fails it raises :class:`jobqueue.JobFailedError`
    with the handler's exception as ``__cause__`` (retries are not attempted).
    ``add_many`` runs the jobs in order and stops at the first failure.
    ``add_bundle`` runs every job of the bundle, fires the bundle listeners and
    then the durable bundle handler (``@jobworker.bundle_handler``), and raises
    for the first failure after that. A ``start_at`` in the future is ignored:
    the job runs now. A job of an unregistered type raises RegistrationError.
    """
    return _with_modes(lambda modes: replace(modes, synchronous=True))


def ignore_jobs(predicate: JobPredicate | None = None) -> contextlib.AbstractContextManager[None]:
    """Inside the block, ``jobqueue.add`` / ``add_many`` drop the jobs that ``predicate(job)``
    selects (every job when None): they are returned unchanged and never stored or run.

    Bundles are not affected; see :func:`ignore_job_bundles`.
    """
    selected: JobPredicate = _always if predicate is None else predicate
    if not callable(selected):
        raise TypeError(f"predicate must be callable, got {type(predicate).__name__}")
    return _with_modes(lambda modes: replace(modes, ignore_jobs=(*modes.ignore_jobs, selected)))


def ignore_job_type(job_type: str, *more: str) -> contextlib.AbstractContextManager[None]:
    """:func:`ignore_jobs` for the jobs of these types."""
    types = frozenset(check_name(t, "job type") for t in (job_type, *more))
    return ignore_jobs(lambda job: job.type in types)


def ignore_job_bundles(predicate: BundlePredicate | None = None) -> contextlib.AbstractContextManager[None]:
    """Inside the block, ``jobqueue.add_bundle`` drops the bundles that ``predicate(bundle)``
    selects (every bundle when None): returned unchanged, never stored or run."""
    selected: BundlePredicate = _always if predicate is None else predicate
    if not callable(selected):
        raise TypeError(f"predicate must be callable, got {type(predicate).__name__}")
    return _with_modes(lambda modes: replace(modes, ignore_bundles=(*modes.ignore_bundles, selected)))


@contextlib.contextmanager
def record_jobs() -> Iterator[list[Job]]:
    """Collect every job the add paths see in this context (stored, run inline or ignored)
    into the yielded list; used by the pytest plugin's ``assert_enqueued``."""
    jobs: list[Job] = []
    token = _recorder.set(jobs)
    try:
        yield jobs
    finally:
        _recorder.reset(token)


def recorded_jobs() -> list[Job] | None:
    """The list of the innermost :func:`record_jobs` block, or None outside one."""
    return _recorder.get()


def active() -> bool:
    """True when some mode or recorder applies here (the add paths then call the handlers below)."""
    return _modes.get() is not _NO_MODES or _recorder.get() is not None


# -- what the add paths call -----------------------------------------------------------------


def handle_jobs(jobs: Sequence[Job]) -> list[Job]:
    """Apply the modes to validated jobs: drop or run them; return those still to be stored."""
    recorder = _recorder.get()
    if recorder is not None:
        recorder.extend(jobs)
    modes = _modes.get()
    to_store: list[Job] = []
    for job in jobs:
        if any(selects(job) for selects in modes.ignore_jobs):
            logger.debug("ignoring job %s (test mode)", job.id, extra={"job_id": str(job.id)})
        elif modes.synchronous:
            _run_or_raise(job)
        else:
            to_store.append(job)
    return to_store


def handle_bundle(bundle: JobBundle) -> bool:
    """Apply the modes to a validated bundle; True when it was dropped or run (not to be stored)."""
    recorder = _recorder.get()
    if recorder is not None:
        recorder.extend(bundle.jobs)
    modes = _modes.get()
    if any(selects(bundle) for selects in modes.ignore_bundles):
        logger.debug("ignoring job bundle %s (test mode)", bundle.id, extra={"bundle_id": str(bundle.id)})
        return True
    if not modes.synchronous:
        return False
    failures: list[tuple[Job, BaseException | None]] = []
    for job in bundle.jobs:
        _, error = run_inline(job)
        bundle.num_jobs_stopped += 1
        fire_job_stopped(job, False)
        if job.error_msg is not None:
            failures.append((job, error))
    fire_job_bundle_stopped(bundle)
    handler = jobworker.default_registry().handler(jobworker.BUNDLE_JOB_PREFIX + bundle.type)
    handler_error: JobFailedError | None = None
    if handler is not None:
        try:
            handler.fn(bundle)
        except Exception as exc:
            handler_error = JobFailedError(handler.job_type, bundle.id, f"bundle handler raised {exc!r}")
            handler_error.__cause__ = exc
    if failures:
        job, error = failures[0]
        assert job.error_msg is not None
        if handler_error is not None:
            logger.error("%s", handler_error, exc_info=handler_error.__cause__)
        raise JobFailedError(job.type, job.id, job.error_msg) from error
    if handler_error is not None:
        raise handler_error
    return True


def _run_or_raise(job: Job) -> None:
    _, error = run_inline(job)
    fire_job_stopped(job, False)
    if job.error_msg is not None:
        raise JobFailedError(job.type, job.id, job.error_msg) from error


def run_inline(job: Job) -> tuple[Job, BaseException | None]:
    """Run ``job`` once through the default registry, without a database, and return it with
    the handler's exception (None on success)."""
    return jobworker.run_job_inline(job)


class _NoDatabaseService:
    """The current service inside a test mode when no service was set up: adds go through the
    test modes (validated, then run inline or ignored); anything else raises
    NotInitializedError, as before set-up. So synchronous_jobs() needs no database."""

    def add_job(self, job: Job, *, conn: Any = None) -> Job:
        job_params(job)  # validates
        handle_jobs([job])
        return job

    def add_jobs(self, jobs: Sequence[Job], *, conn: Any = None) -> list[Job]:
        checked = checked_jobs(jobs)
        handle_jobs(checked)
        return checked

    def add_job_bundle(self, bundle: JobBundle, *, conn: Any = None) -> JobBundle:
        checked_bundle(bundle)
        handle_bundle(bundle)
        return bundle

    async def add_job_async(self, job: Job, *, conn: Any = None) -> Job:
        return await asyncio.to_thread(self.add_job, job)

    async def add_jobs_async(self, jobs: Sequence[Job], *, conn: Any = None) -> list[Job]:
        return await asyncio.to_thread(self.add_jobs, jobs)

    async def add_job_bundle_async(self, bundle: JobBundle, *, conn: Any = None) -> JobBundle:
        return await asyncio.to_thread(self.add_job_bundle, bundle)

    def __getattr__(self, name: str) -> Any:
        return getattr(NULL_SERVICE, name)
