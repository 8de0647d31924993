"""Worker settings: durations with their defaults as named constants."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypedDict, Unpack

from jobworker._claim_ahead import AUTO

# Re-exported: the rest of jobworker imports them from here.
from jobworker._durations import Duration as Duration
from jobworker._durations import to_timedelta as to_timedelta
from jobworker._retention import DEFAULT_RETENTION, Retention

DEFAULT_JOB_TIMEOUT = timedelta(minutes=15)
DEFAULT_HEARTBEAT_INTERVAL = timedelta(seconds=10)
DEFAULT_DEAD_FOR = timedelta(seconds=60)
#: ``dead_for`` must be at least this many heartbeat intervals.
DEAD_FOR_HEARTBEATS = 3
#: Upper bound of ``prefetch``: claimed jobs waiting in memory hold their claim.
MAX_PREFETCH = 10_000


class SettingsChanges(TypedDict, total=False):
    """The keywords of ``configure()`` (:func:`jobworker.configure`, :meth:`WorkerPool.configure`,
    :meth:`WorkerSettings.replace`), written once here: each changes the setting of its
    name; None keeps the current value. Durations are timedeltas or seconds."""

    job_timeout: Duration | None
    heartbeat_interval: Duration | None
    dead_for: Duration | None
    reaper_interval: Duration | None
    prefetch: int | Literal["auto"] | None
    retention: Retention | None


#: The names of the settings, in their documented order.
SETTING_NAMES = tuple(SettingsChanges.__annotations__)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """The settings of a :class:`WorkerPool`, immutable; build new ones with :meth:`replace`.

    ``reaper_interval`` None means "the heartbeat interval". Raises ValueError when
    ``dead_for`` is shorter than three heartbeat intervals (a live worker would look dead).

    ``prefetch`` is how many jobs the pool claims ahead of its free threads, so that a
    thread that ends a job starts the next one from memory, without a round trip. ``"auto"``
    (the default) adapts it to the jobs: as many as the threads end in one claim round
    trip, at most ``AUTO_PREFETCH_LIMIT`` (64), none for jobs longer than a round trip
    (see :mod:`jobworker._claim_ahead`); a number fixes it; 0 claims only for free
    threads. A prefetched job holds a claim: a graceful stop gives it back uncounted, but
    if the process is killed (SIGKILL, OOM) the reaper counts that attempt as a crash,
    like a job that was running.

    ``retention`` (:class:`jobworker.Retention`) says how long finished jobs and bundles
    are kept; the pool's maintenance deletes older ones (by default succeeded and
    cancelled jobs and finished bundles after 7 days, failed jobs after 30).
    """

    job_timeout: timedelta = DEFAULT_JOB_TIMEOUT
    heartbeat_interval: timedelta = DEFAULT_HEARTBEAT_INTERVAL
    dead_for: timedelta = DEFAULT_DEAD_FOR
    reaper_interval: timedelta | None = None
    prefetch: int | Literal["auto"] = AUTO
    retention: Retention = DEFAULT_RETENTION

    def __post_init__(self) -> None:
        check_prefetch(self.prefetch)
        to_timedelta(self.job_timeout, "job_timeout")
        to_timedelta(self.heartbeat_interval, "heartbeat_interval")
        to_timedelta(self.dead_for, "dead_for")
        if self.reaper_interval is not None:
            to_timedelta(self.reaper_interval, "reaper_interval")
        if self.dead_for < DEAD_FOR_HEARTBEATS * self.heartbeat_interval:
            raise ValueError(
                f"dead_for ({self.dead_for}) must be at least {DEAD_FOR_HEARTBEATS} x heartbeat_interval "
                f"({self.heartbeat_interval}), or live workers would be taken for dead"
            )

    @property
    def effective_reaper_interval(self) -> timedelta:
        """How often dead jobs are reaped: ``reaper_interval``, else the heartbeat interval."""
        return self.reaper_interval if self.reaper_interval is not None else self.heartbeat_interval

    def replace(self, **changes: Unpack[SettingsChanges]) -> WorkerSettings:
        """New settings with the given values changed (None keeps the current value).

        Raises TypeError for a keyword that is not a setting, ValueError for a bad value.
        """
        values: dict[str, Any] = {}
        given: dict[str, Any] = dict(changes)
        for name, value in given.items():
            if name not in SETTING_NAMES:
                raise TypeError(
                    f"unknown worker setting {name!r}; the settings are {', '.join(SETTING_NAMES)}"
                )
            if value is None:
                continue
            if name == "prefetch":
                values[name] = check_prefetch(value)
            elif name == "retention":
                if not isinstance(value, Retention):
                    raise ValueError(f"retention must be a jobworker.Retention, got {type(value).__name__}")
                values[name] = value
            else:
                values[name] = to_timedelta(value, name)
        return dataclasses.replace(self, **values)


def check_prefetch(value: int | Literal["auto"]) -> int | Literal["auto"]:
    """``value`` if it is a valid ``prefetch`` (``"auto"`` or an int); ValueError otherwise."""
    if value == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'prefetch must be an int or "auto", got {value!r}')
    if not 0 <= value <= MAX_PREFETCH:
        raise ValueError(f"prefetch must be between 0 and {MAX_PREFETCH}, got {value}")
    return value
