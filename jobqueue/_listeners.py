"""Process-wide listener registries for job and bundle stop events.

``jobworker_pg.init_job_queue`` connects them to the database notifications
through :class:`ListenerDispatcher`. Each listener is called at most once per
event in each listening process, on the service's listener thread; an
exception in a listener is logged and does not affect the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple
from uuid import UUID

from jobqueue._errors import JobNotFoundError
from jobqueue._models import Job, JobBundle
from jobqueue._service import Service

logger = logging.getLogger(__name__)

JobStoppedListener = Callable[[Job, bool], None]


class JobStoppedEvent(NamedTuple):
    """What a job_stopped notification carries."""

    job_id: UUID
    job_type: str
    origin: str
    will_retry: bool


BundleStoppedListener = Callable[[JobBundle], None]

_lock = threading.Lock()
_job_stopped: list[JobStoppedListener] = []
_bundle_stopped: list[BundleStoppedListener] = []
_bundle_of_type_stopped: dict[str, BundleStoppedListener] = {}
# Called (outside the lock) after a listener is added; one returning False is dropped.
_on_listened: list[Callable[[], bool]] = []


def when_listened(callback: Callable[[], bool]) -> None:
    """Call ``callback()`` once some listener is registered: now if one already is, else
    right after the next ``add_*`` / ``set_*`` call here, again after each later one until it
    returns False. ``jobworker_pg.init_job_queue`` uses it to connect a service to these
    registries (LISTEN for stop events, a dispatch thread) only in processes that listen."""
    with _lock:
        listened = bool(_job_stopped or _bundle_stopped or _bundle_of_type_stopped)
        if not listened:
            _on_listened.append(callback)
            return
    if callback():
        with _lock:
            _on_listened.append(callback)


def _listened() -> None:
    with _lock:
        callbacks = list(_on_listened)
    dropped = [fn for fn in callbacks if not fn()]
    if dropped:
        with _lock:
            for fn in dropped:
                if fn in _on_listened:
                    _on_listened.remove(fn)


def add_job_stopped_listener(fn: JobStoppedListener) -> None:
    """Call ``fn(job, will_retry)`` after every attempt of every job ends."""
    with _lock:
        _job_stopped.append(fn)
    _listened()


def remove_job_stopped_listener(fn: JobStoppedListener) -> None:
    """Undo :func:`add_job_stopped_listener` (no error if ``fn`` was not added)."""
    with _lock:
        if fn in _job_stopped:
            _job_stopped.remove(fn)


def add_job_bundle_stopped_listener(fn: BundleStoppedListener) -> None:
    """Call ``fn(bundle)`` once when the last job of any bundle stops for good."""
    with _lock:
        _bundle_stopped.append(fn)
    _listened()


def remove_job_bundle_stopped_listener(fn: BundleStoppedListener) -> None:
    """Undo :func:`add_job_bundle_stopped_listener` (no error if ``fn`` was not added)."""
    with _lock:
        if fn in _bundle_stopped:
            _bundle_stopped.remove(fn)


def set_job_bundle_of_type_stopped_listener(bundle_type: str, fn: BundleStoppedListener) -> None:
    """Call ``fn(bundle)`` when a bundle of ``bundle_type`` stops; replaces an earlier one."""
    with _lock:
        _bundle_of_type_stopped[bundle_type] = fn
    _listened()


def remove_job_bundle_of_type_stopped_listener(bundle_type: str) -> None:
    """Undo :func:`set_job_bundle_of_type_stopped_listener` for ``bundle_type``."""
    with _lock:
        _bundle_of_type_stopped.pop(bundle_type, None)


def has_job_stopped_listeners() -> bool:
    """True when some job-stopped listener is registered."""
    return bool(_job_stopped)


def fire_job_stopped(job: Job, will_retry: bool) -> None:
    """Call every job-stopped listener with ``job`` (used by notifications and synchronous mode)."""
    with _lock:
        listeners = list(_job_stopped)
    for fn in listeners:
        try:
            fn(job, will_retry)
        except Exception:
            logger.exception(
                "job stopped listener failed", extra={"job_id": str(job.id), "job_type": job.type}
            )


def fire_job_bundle_stopped(bundle: JobBundle) -> None:
    """Call the bundle listeners (general ones, then the one for its type) with ``bundle``."""
    with _lock:
        listeners = list(_bundle_stopped)
        of_type = _bundle_of_type_stopped.get(bundle.type)
    if of_type is not None:
        listeners.append(of_type)
    for fn in listeners:
        try:
            fn(bundle)
        except Exception:
            logger.exception("bundle stopped listener failed", extra={"bundle_id": str(bundle.id)})


class ListenerDispatcher:
    """A ServiceListener that loads the job or bundle and fires the registries above.

    It loads from the database only when a listener for the event exists.
    """

    def __init__(self, service: Service) -> None:
        self._service = service

    def on_job_stopped(self, job_id: UUID, job_type: str, origin: str, will_retry: bool) -> None:
        self.on_jobs_stopped([JobStoppedEvent(job_id, job_type, origin, will_retry)])

    def on_jobs_stopped(self, events: Sequence[JobStoppedEvent]) -> None:
        """Several stop events at once (a listener's backlog): each distinct event fires the
        listeners once, and the jobs are read in one call where the service offers
        ``get_jobs`` (PostgresService does), instead of one read per event."""
        if not _job_stopped or not events:
            return
        distinct = list(dict.fromkeys(events))  # the same job and will_retry: the same call
        jobs = self._load([e.job_id for e in distinct])
        for event in distinct:
            job = jobs.get(event.job_id)
            if job is not None:  # else deleted before we looked: nothing to report
                fire_job_stopped(job, event.will_retry)

    def _load(self, job_ids: list[UUID]) -> dict[UUID, Job]:
        get_jobs = getattr(self._service, "get_jobs", None)
        if callable(get_jobs):
            return {j.id: j for j in get_jobs(job_ids)}
        jobs = {}
        for job_id in dict.fromkeys(job_ids):
            try:
                jobs[job_id] = self._service.get_job(job_id)
            except JobNotFoundError:
                continue
        return jobs

    def on_job_bundle_stopped(self, bundle_id: UUID, bundle_type: str, origin: str) -> None:
        if not _bundle_stopped and bundle_type not in _bundle_of_type_stopped:
            return
        try:
            bundle = self._service.get_job_bundle(bundle_id)
        except JobNotFoundError:
            return
        fire_job_bundle_stopped(bundle)
