"""Waiting for a job or bundle to stop for good: :func:`wait_for_job`, :func:`wait_for_bundle`
and their async twins.

A wait reads the job (or bundle) through the :class:`Service`, and reads it
again only when it is woken: by the ``job_stopped`` notification of that job
(with no retry to come) or the ``job_bundle_stopped`` of that bundle, and after
the service's notification connection is re-established (what stopped while it
was away was not notified). One :class:`ServiceListener` per service serves
every wait in the process. Where notifications cannot work (the service says
``on_listening(False)``, or never says anything: a PgBouncer in transaction
mode, a service without LISTEN), waits read again every ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import TypeVar
from uuid import UUID

from jobqueue._constructors import check_uuid
from jobqueue._current import get_service
from jobqueue._errors import InvalidJobError, WaitTimeoutError
from jobqueue._models import Job, JobBundle
from jobqueue._service import Service

#: How often a wait reads the job again where notifications do not work.
DEFAULT_WAIT_POLL_INTERVAL = timedelta(seconds=0.5)

Wake = Callable[[], None]
# What a wait reads until it has stopped.
_Stoppable = TypeVar("_Stoppable", Job, JobBundle)


class _StopWaiters:
    """The ServiceListener of one service: wakes the waits of the jobs and bundles it hears
    stop. Called on the service's listener thread; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waits: dict[UUID, set[Wake]] = {}
        self.listen_works: bool | None = None  # None until the service says

    @contextmanager
    def watch(self, id: UUID, wake: Wake) -> Iterator[None]:
        """Call ``wake()`` while inside the block when ``id`` may have stopped."""
        with self._lock:
            self._waits.setdefault(id, set()).add(wake)
        try:
            yield
        finally:
            with self._lock:
                wakes = self._waits.get(id)
                if wakes is not None:
                    wakes.discard(wake)
                    if not wakes:
                        del self._waits[id]

    def _wake(self, id: UUID | None) -> None:
        with self._lock:
            if id is None:
                wakes = [w for ws in self._waits.values() for w in ws]
            else:
                wakes = list(self._waits.get(id, ()))
        for wake in wakes:
            wake()

    def on_job_stopped(self, job_id: UUID, job_type: str, origin: str, will_retry: bool) -> None:
        if not will_retry:
            self._wake(job_id)

    def on_job_bundle_stopped(self, bundle_id: UUID, bundle_type: str, origin: str) -> None:
        self._wake(bundle_id)

    def on_listening(self, listen_works: bool) -> None:
        """The service's notification connection is (re)established; events may have been
        missed before it, so every wait reads again."""
        self.listen_works = listen_works
        self._wake(None)


_waiters: weakref.WeakKeyDictionary[Service, _StopWaiters] = weakref.WeakKeyDictionary()
_waiters_lock = threading.Lock()


def _waiters_of(service: Service) -> _StopWaiters:
    """The listener of ``service``, added on first use (add_listener waits for LISTEN)."""
    with _waiters_lock:
        waiters = _waiters.get(service)
        if waiters is not None:
            return waiters
        waiters = _StopWaiters()
        service.add_listener(waiters)
        _waiters[service] = waiters
        return waiters


def _seconds(value: timedelta | float | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJobError(f"{what} must be a timedelta or a number of seconds, got {value!r}")
    else:
        seconds = float(value)
    if seconds <= 0:
        raise InvalidJobError(f"{what} must be positive, got {value!r}")
    return seconds


class _Deadline:
    """What one wait waits for (``id``, a job or a bundle) and until when."""

    def __init__(
        self, what: str, id: UUID, timeout: float | None, poll: float, waiters: _StopWaiters
    ) -> None:
        self._what, self.id, self._timeout, self._poll = what, id, timeout, poll
        self.waiters = waiters
        self._end = None if timeout is None else time.monotonic() + timeout

    def next_wait(self) -> float | None:
        """How long to sleep before reading again (None: until woken); raises WaitTimeoutError
        once the time is up."""
        left = None if self._end is None else self._end - time.monotonic()
        if left is not None and left <= 0:
            assert self._timeout is not None
            raise WaitTimeoutError(self._what, self.id, self._timeout)
        if self.waiters.listen_works:
            return left
        return self._poll if left is None else min(left, self._poll)


def _checked(
    id: UUID, timeout: timedelta | float | None, poll_interval: timedelta | float, service: Service | None
) -> tuple[UUID, float | None, float, Service]:
    poll = _seconds(poll_interval, "poll_interval")
    assert poll is not None
    return (
        check_uuid(id),
        _seconds(timeout, "timeout"),
        poll,
        service if service is not None else get_service(),
    )


def wait_for_job(
    job_id: UUID,
    timeout: timedelta | float | None = None,
    *,
    poll_interval: timedelta | float = DEFAULT_WAIT_POLL_INTERVAL,
    service: Service | None = None,
) -> Job:
    """Block until the job has stopped for good (succeeded, failed with no retry left, or
    cancelled) and return it as stored: a failed job is returned, not raised (read its
    ``error_msg``).

    Woken by the job's ``job_stopped`` notification; polls every ``poll_interval`` only
    where notifications do not work. ``timeout`` (seconds or timedelta; None: no limit)
    raises WaitTimeoutError. JobNotFoundError if there is no such job (or it is deleted
    while waited for). Uses ``service``, else the current service. Thread-safe.
    """
    job_id, seconds, poll, svc = _checked(job_id, timeout, poll_interval, service)
    return _wait_until_stopped(_Deadline("job", job_id, seconds, poll, _waiters_of(svc)), svc.get_job)


def wait_for_bundle(
    bundle_id: UUID,
    timeout: timedelta | float | None = None,
    *,
    poll_interval: timedelta | float = DEFAULT_WAIT_POLL_INTERVAL,
    service: Service | None = None,
) -> JobBundle:
    """Block until every job of the bundle has stopped for good, and return the bundle with
    its jobs (failed ones included). Waking, ``timeout`` and errors as :func:`wait_for_job`."""
    bundle_id, seconds, poll, svc = _checked(bundle_id, timeout, poll_interval, service)
    deadline = _Deadline("job bundle", bundle_id, seconds, poll, _waiters_of(svc))
    return _wait_until_stopped(deadline, svc.get_job_bundle)


async def wait_for_job_async(
    job_id: UUID,
    timeout: timedelta | float | None = None,
    *,
    poll_interval: timedelta | float = DEFAULT_WAIT_POLL_INTERVAL,
    service: Service | None = None,
) -> Job:
    """Awaitable :func:`wait_for_job`; never blocks the event loop."""
    job_id, seconds, poll, svc = _checked(job_id, timeout, poll_interval, service)
    waiters = await asyncio.to_thread(_waiters_of, svc)
    return await _await_until_stopped(_Deadline("job", job_id, seconds, poll, waiters), svc.get_job_async)


async def wait_for_bundle_async(
    bundle_id: UUID,
    timeout: timedelta | float | None = None,
    *,
    poll_interval: timedelta | float = DEFAULT_WAIT_POLL_INTERVAL,
    service: Service | None = None,
) -> JobBundle:
    """Awaitable :func:`wait_for_bundle`; never blocks the event loop."""
    bundle_id, seconds, poll, svc = _checked(bundle_id, timeout, poll_interval, service)
    waiters = await asyncio.to_thread(_waiters_of, svc)
    deadline = _Deadline("job bundle", bundle_id, seconds, poll, waiters)

    async def read(bundle_id: UUID) -> JobBundle:
        return await asyncio.to_thread(svc.get_job_bundle, bundle_id)

    return await _await_until_stopped(deadline, read)


def _wait_until_stopped(deadline: _Deadline, read: Callable[[UUID], _Stoppable]) -> _Stoppable:
    """Read the job or bundle of ``deadline`` until it has stopped, sleeping between reads
    until it is woken (or polls)."""
    woken = threading.Event()
    with deadline.waiters.watch(deadline.id, woken.set):
        while not (found := read(deadline.id)).stopped:
            woken.wait(deadline.next_wait())
            woken.clear()
        return found


async def _await_until_stopped(
    deadline: _Deadline, read: Callable[[UUID], Awaitable[_Stoppable]]
) -> _Stoppable:
    """:func:`_wait_until_stopped` on the running event loop."""
    woken = asyncio.Event()
    with deadline.waiters.watch(deadline.id, _loop_wake(asyncio.get_running_loop(), woken)):
        while not (found := await read(deadline.id)).stopped:
            seconds = deadline.next_wait()  # raises WaitTimeoutError (a TimeoutError): not suppressed
            with suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), seconds)
            woken.clear()
        return found


def _loop_wake(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> Wake:
    def wake() -> None:
        with suppress(RuntimeError):  # the waiting loop closed; nobody waits any more
            loop.call_soon_threadsafe(event.set)

    return wake
