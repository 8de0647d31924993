"""Queues and their rules: the public configuration types and their checks.

A job's ``queue`` (default :data:`DEFAULT_QUEUE`) says which workers take it;
:func:`jobqueue.configure_queue` stores rules for a queue in the database, so
that every worker process applies the same ones when it claims:

- ``concurrency``: at most N jobs of the queue running at once, cluster-wide;
- ``per_key_concurrency``: at most N running jobs per ``concurrency_key``;
- ``rate_limit``: at most ``count`` starts in any window of length ``per``;
- ``paused``: no claims at all (running jobs finish).

This module only describes and checks; the database layer enforces.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from jobqueue._errors import InvalidJobError
from jobqueue._payload import check_json

#: The queue of a job that names none (and of every job a go-jobqueue process inserts).
DEFAULT_QUEUE: Final = "default"
MAX_QUEUE_NAME_LENGTH = 100
MAX_CONCURRENCY_KEY_LENGTH = 200
_INT32_MAX = 2**31 - 1


class NoLimit(enum.Enum):
    """The type of :data:`NO_LIMIT`."""

    NO_LIMIT = "no limit"

    def __repr__(self) -> str:
        return "jobqueue.NO_LIMIT"


#: Passed to :func:`jobqueue.configure_queue` to remove a limit (None keeps the current one).
NO_LIMIT: Final = NoLimit.NO_LIMIT


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` job starts in any window of length ``per`` (a sliding window kept in
    the database, across all worker processes). ``per`` is a timedelta or seconds."""

    count: int
    per: timedelta = timedelta(seconds=1)

    def __post_init__(self) -> None:
        if (
            isinstance(self.count, bool)
            or not isinstance(self.count, int)
            or not 0 < self.count <= _INT32_MAX
        ):
            raise InvalidJobError(f"RateLimit count must be a positive int, got {self.count!r}")
        per: Any = self.per
        if isinstance(per, int | float) and not isinstance(per, bool):
            per = timedelta(seconds=per)
            object.__setattr__(self, "per", per)
        if not isinstance(per, timedelta) or per <= timedelta(0):
            raise InvalidJobError(f"RateLimit per must be a positive timedelta or seconds, got {self.per!r}")

    def __str__(self) -> str:
        return f"{self.count}/{self.per.total_seconds():g}s"


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue's rules and, when listed, its job counts. A queue never configured has no
    limits and is not paused."""

    name: str
    concurrency: int | None = None
    per_key_concurrency: int | None = None
    rate_limit: RateLimit | None = None
    paused: bool = False
    waiting: int = 0  # due or scheduled, not running (only filled by list_queues)
    running: int = 0


def check_queue_name(value: Any, what: str = "queue") -> str:
    """A queue name: a 1..100 character string without control characters."""
    from jobqueue._constructors import check_name  # here: _constructors imports this module

    if type(value) is str and value == DEFAULT_QUEUE:
        return value
    return check_name(value, what)


def check_concurrency_key(value: Any) -> str | None:
    """None, or a 1..200 character string without control characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidJobError(f"concurrency_key must be a str, got {type(value).__name__}")
    if not value or len(value) > MAX_CONCURRENCY_KEY_LENGTH:
        raise InvalidJobError(
            f"concurrency_key must be 1 to {MAX_CONCURRENCY_KEY_LENGTH} characters long, got {len(value)}"
        )
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise InvalidJobError(f"concurrency_key {value!r} contains a control character")
    return value


def check_timeout(value: Any) -> timedelta | None:
    """None, or a positive duration (a timedelta or seconds) as a timedelta."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = timedelta(seconds=value)
    if not isinstance(value, timedelta):
        raise InvalidJobError(f"timeout must be a timedelta or a number of seconds, got {value!r}")
    if value <= timedelta(0):
        raise InvalidJobError(f"timeout must be positive, got {value}")
    return value


def check_meta(value: Any) -> dict[str, Any] | None:
    """None, or a JSON object (a dict with str keys) whose values are JSON."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidJobError(f"meta must be a dict (a JSON object), got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise InvalidJobError(f"meta keys must be str, got {key!r}")
    check_json(value, "meta")
    return value


def check_limit(value: Any, what: str) -> int | NoLimit | None:
    """A ``configure_queue`` count: None (keep), NO_LIMIT (remove) or a positive int."""
    if value is None or value is NO_LIMIT:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _INT32_MAX:
        raise InvalidJobError(f"{what} must be a positive int, None or jobqueue.NO_LIMIT, got {value!r}")
    return value


def check_rate_limit(value: Any) -> RateLimit | NoLimit | None:
    """A ``configure_queue`` rate limit: None (keep), NO_LIMIT (remove) or a RateLimit."""
    if value is None or value is NO_LIMIT or isinstance(value, RateLimit):
        return value
    raise InvalidJobError(
        f"rate_limit must be a jobqueue.RateLimit, None or jobqueue.NO_LIMIT, got {value!r}"
    )


def check_paused(value: Any) -> bool | None:
    """A ``configure_queue`` pause flag: None (keep) or a bool."""
    if value is None or isinstance(value, bool):
        return value
    raise InvalidJobError(f"paused must be a bool or None, got {value!r}")
