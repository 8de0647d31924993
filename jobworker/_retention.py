"""Retention: how long finished jobs and bundles are kept before the worker deletes them.

Every running pool's maintenance thread prunes every ``interval``; the database
lets one process at a time do it (an advisory lock: the others skip that round)
and deletes in batches of ``batch_size`` rows, each its own short transaction,
so pruning never holds long locks. Jobs in a bundle are kept with their bundle
and go when the bundle goes (once all its jobs stopped, ``bundles`` after its
last change).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypedDict, Unpack

from jobworker._durations import to_timedelta

DEFAULT_KEEP_SUCCEEDED = timedelta(days=7)
#: Failed jobs are kept longer: they are what someone comes back to look at.
DEFAULT_KEEP_FAILED = timedelta(days=30)
DEFAULT_KEEP_CANCELLED = timedelta(days=7)
DEFAULT_KEEP_BUNDLES = timedelta(days=7)
DEFAULT_PRUNE_INTERVAL = timedelta(minutes=5)
DEFAULT_PRUNE_BATCH_SIZE = 1_000
#: At most this many batches (of jobs, then of bundles) per round, so that a round stays far
#: shorter than a heartbeat interval: the maintenance thread sends those too.
DEFAULT_PRUNE_MAX_BATCHES = 10
#: After a round that deleted its most (more is waiting), the next one comes after a pause as
#: long as that round took, and at least this long, not a whole ``interval`` later: pruning
#: keeps up with any job rate while taking at most about half of one server connection's time.
PRUNE_BACKLOG_MIN_PAUSE_SECONDS = 0.1


class RetentionChanges(TypedDict, total=False):
    """The keywords of :meth:`Retention.replace`; a duration is a timedelta or seconds,
    and None as an age means "keep forever"."""

    succeeded: timedelta | float | None
    failed: timedelta | float | None
    cancelled: timedelta | float | None
    bundles: timedelta | float | None
    interval: timedelta | float
    batch_size: int
    enabled: bool


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished jobs are kept, per state, and how pruning runs. Immutable.

    ``succeeded`` / ``failed`` / ``cancelled``: age (since the job stopped) after which
    such a job outside a bundle is deleted; None keeps them forever. ``bundles``: age
    (since the bundle's last change) after which a bundle whose jobs have all stopped is
    deleted with its jobs; None keeps them. ``enabled=False`` turns pruning off.
    Raises ValueError for a negative or non-finite age, or a batch size under 1.
    """

    succeeded: timedelta | None = DEFAULT_KEEP_SUCCEEDED
    failed: timedelta | None = DEFAULT_KEEP_FAILED
    cancelled: timedelta | None = DEFAULT_KEEP_CANCELLED
    bundles: timedelta | None = DEFAULT_KEEP_BUNDLES
    interval: timedelta = DEFAULT_PRUNE_INTERVAL
    batch_size: int = DEFAULT_PRUNE_BATCH_SIZE
    enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("succeeded", "failed", "cancelled", "bundles", "interval"):
            value = getattr(self, name)
            if value is None and name != "interval":
                continue
            object.__setattr__(self, name, _age(value, name, allow_zero=name != "interval"))
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"retention batch_size must be a positive int, got {self.batch_size!r}")
        if not isinstance(self.enabled, bool):
            raise ValueError(f"retention enabled must be a bool, got {self.enabled!r}")

    @classmethod
    def off(cls) -> Retention:
        """Keep every finished job and bundle (no pruning)."""
        return cls(enabled=False)

    def replace(self, **changes: Unpack[RetentionChanges]) -> Retention:
        """New retention settings with the given values changed (None as an age: keep forever)."""
        given: dict[str, Any] = dict(changes)
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(given) - names)
        if unknown:
            raise TypeError(
                f"unknown retention setting {unknown[0]!r}; the settings are {', '.join(sorted(names))}"
            )
        return dataclasses.replace(self, **given)

    @property
    def prunes_anything(self) -> bool:
        """True when enabled and some age is set."""
        return self.enabled and any(
            a is not None for a in (self.succeeded, self.failed, self.cancelled, self.bundles)
        )


def _age(value: object, what: str, *, allow_zero: bool) -> timedelta:
    if not isinstance(value, timedelta | int | float) or isinstance(value, bool):
        raise ValueError(f"retention {what} must be a timedelta, a number of seconds or None, got {value!r}")
    return to_timedelta(value, f"retention {what}", allow_zero=allow_zero)


#: The documented defaults (Retention is immutable, so one instance serves every pool).
DEFAULT_RETENTION = Retention()
