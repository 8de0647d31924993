"""Managing periodic schedules cluster-wide: :class:`PeriodicInfo` and the functions on the
current service (``list_periodic``, ``enable_periodic`` ...).

Schedules are declared by the worker processes that run them (``jobworker.periodic``);
their state (enabled, last tick) lives in the database, so a change here applies to every
worker from its next tick on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from jobqueue._current import get_service
from jobqueue._errors import JobQueueError
from jobqueue._models import Job

#: A schedule that no running worker declared for this long is shown as orphaned: its code
#: was removed (or no worker runs at all). Workers declare their schedules every minute.
ORPHANED_AFTER = timedelta(minutes=10)


class PeriodicInfo(BaseModel):
    """A stored periodic schedule (a row of ``worker.schedule``), as ``list_periodic`` shows it."""

    name: str
    schedule: str  # the crontab string, or "@every <seconds>s"
    timezone: str
    job_type: str
    payload: Any = None
    priority: int = 0
    max_retry_count: int = 0
    catch_up: str = "latest"
    enabled: bool = True
    last_tick: datetime | None = None  # the latest tick enqueued (or skipped by catch_up)
    next_run: datetime | None = None  # the next tick to come; None when disabled
    created_at: datetime
    seen_at: datetime  # when a worker last declared it
    orphaned: bool = False  # no worker declared it for ORPHANED_AFTER


@runtime_checkable
class PeriodicAdmin(Protocol):
    """The schedule management of a service (:class:`jobworker_pg.PostgresService` has it)."""

    def list_periodic(self) -> list[PeriodicInfo]: ...
    def get_periodic(self, name: str) -> PeriodicInfo: ...
    def enable_periodic(self, name: str) -> PeriodicInfo: ...
    def disable_periodic(self, name: str) -> PeriodicInfo: ...
    def run_periodic_now(self, name: str) -> Job: ...
    def delete_periodic(self, name: str) -> None: ...


def _admin() -> PeriodicAdmin:
    service = get_service()
    if not isinstance(service, PeriodicAdmin):
        raise JobQueueError(f"the current service ({type(service).__name__}) does not manage periodic jobs")
    return service


def list_periodic() -> list[PeriodicInfo]:
    """Every stored schedule, by name: schedule, job type, enabled, last tick, next run, orphaned."""
    return _admin().list_periodic()


def get_periodic(name: str) -> PeriodicInfo:
    """The schedule ``name``; JobNotFoundError if none."""
    return _admin().get_periodic(name)


def enable_periodic(name: str) -> PeriodicInfo:
    """Enable ``name`` in every worker from its next tick on; the ticks of the disabled time
    are not caught up. JobNotFoundError if no such schedule is stored."""
    return _admin().enable_periodic(name)


def disable_periodic(name: str) -> PeriodicInfo:
    """Disable ``name``: no worker enqueues a tick of it once this returns (persisted).
    JobNotFoundError if no such schedule is stored."""
    return _admin().disable_periodic(name)


def run_periodic_now(name: str) -> Job:
    """Enqueue one job of ``name`` now (``scheduled_for`` = the database's now), whether
    enabled or not; its regular ticks are unaffected. JobNotFoundError if unknown."""
    return _admin().run_periodic_now(name)


def next_run(name: str) -> datetime | None:
    """When the next tick of ``name`` comes (None when disabled). JobNotFoundError if unknown."""
    return _admin().get_periodic(name).next_run


def delete_periodic(name: str) -> None:
    """Forget the schedule ``name`` (for orphaned ones: a worker that still runs it stores
    it again within a minute). JobNotFoundError if unknown."""
    _admin().delete_periodic(name)
