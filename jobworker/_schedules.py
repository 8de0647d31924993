"""When the ticks of a periodic schedule fall: crontab strings (parsed by croniter) and fixed
intervals, in a time zone (zoneinfo).

The DST rule (documented in the README): cron schedules follow the wall clock of their time
zone, and every wall-clock time they name runs **once**:

- a time that does not exist (skipped by a spring-forward change, such as 02:30 on the
  day clocks jump from 02:00 to 03:00) runs at the first instant after the gap (03:00);
  several skipped times collapse into that one run;
- a time that exists twice (repeated by a fall-back change, such as 01:30 when clocks go
  back from 02:00 to 01:00) runs at its first occurrence only.

``every(interval)`` counts real time: ticks at whole multiples of the interval since the
Unix epoch (UTC), unaffected by DST and the same in every process.
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from jobqueue import RegistrationError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The shorthand crontab strings accepted besides the five-field ones.
CRON_SHORTHANDS = ("@hourly", "@daily", "@weekly", "@monthly")
_EVERY_PREFIX = "@every "
# The largest UTC-offset change of any zone's DST or base-offset transition, with room to
# spare: a backward search starts this far ahead so that it also sees ticks of a repeated hour.
_MAX_SHIFT = timedelta(hours=3)
_MINUTE = timedelta(minutes=1)


class Schedule:
    """When ticks fall. Subclasses: :class:`CronSchedule`, :class:`IntervalSchedule`."""

    #: The stored text form: a crontab string, or ``"@every <seconds>s"``.
    expression: str

    def next_after(self, moment: datetime, tz: tzinfo) -> datetime:
        """The first tick strictly after ``moment`` (aware), as an aware UTC datetime."""
        raise NotImplementedError

    def latest_ticks(self, after: datetime, until: datetime, tz: tzinfo, limit: int) -> list[datetime]:
        """Up to ``limit`` of the latest ticks ``t`` with ``after < t <= until``, oldest first."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Schedule) and type(other) is type(self) and other.expression == self.expression
        )

    def __hash__(self) -> int:
        return hash(self.expression)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.expression!r})"


class IntervalSchedule(Schedule):
    """Every ``interval`` of real time, at whole multiples of it since the Unix epoch."""

    def __init__(self, interval: timedelta) -> None:
        self.interval = interval
        seconds = interval.total_seconds()
        self.expression = f"{_EVERY_PREFIX}{seconds:g}s"

    def _index(self, moment: datetime) -> int:
        return int((moment - _EPOCH) // self.interval)

    def next_after(self, moment: datetime, tz: tzinfo) -> datetime:
        return _EPOCH + self.interval * (self._index(moment) + 1)

    def latest_ticks(self, after: datetime, until: datetime, tz: tzinfo, limit: int) -> list[datetime]:
        last = self._index(until)
        first = max(self._index(after) + 1, last - limit + 1)
        return [_EPOCH + self.interval * k for k in range(first, last + 1)]


class CronSchedule(Schedule):
    """A five-field crontab string or a shorthand (``@hourly`` ...), on the wall clock of the
    schedule's time zone, with the DST rule of this module."""

    def __init__(self, expression: str) -> None:
        self.expression = expression

    def next_after(self, moment: datetime, tz: tzinfo) -> datetime:
        # Forward from the wall time of moment; a tick of a repeated hour can map before it.
        local = moment.astimezone(tz).replace(tzinfo=None)
        times = croniter(self.expression, local)
        while True:
            tick = to_instant(times.get_next(datetime), tz)
            if tick > moment:
                return tick

    def latest_ticks(self, after: datetime, until: datetime, tz: tzinfo, limit: int) -> list[datetime]:
        # Backward from a little after until's wall time: wall times of a repeated hour map up
        # to _MAX_SHIFT out of order, so the walk ends only that far past what it needs.
        local = (until + _MAX_SHIFT).astimezone(tz).replace(tzinfo=None)
        times = croniter(self.expression, local)
        found: set[datetime] = set()
        while True:
            try:
                tick = to_instant(times.get_prev(datetime), tz)
            except CroniterBadDateError:  # no earlier time matches (say, the 31st of February)
                break
            if after < tick <= until:
                found.add(tick)
            floor = after if len(found) < limit else heapq.nlargest(limit, found)[-1]
            if tick < floor - _MAX_SHIFT:
                break
        return sorted(found)[-limit:]


def to_instant(wall: datetime, tz: tzinfo) -> datetime:
    """The UTC instant at which the naive wall-clock time ``wall`` of ``tz`` runs: its first
    occurrence when it is repeated, the end of the gap when it is skipped."""
    aware = wall.replace(tzinfo=tz)  # fold=0: the first occurrence of a repeated time
    instant = aware.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant
    # In a gap. fold=0 read it with the offset from before the change, which lands after
    # the gap: walk back to the instant the clock jumped (zoneinfo does not expose it).
    offset = instant.astimezone(tz).utcoffset()
    while (instant - _MINUTE).astimezone(tz).utcoffset() == offset:
        instant -= _MINUTE
    return instant


def check_timezone(name: str) -> ZoneInfo:
    """The zone called ``name``; RegistrationError for an unknown one."""
    if not isinstance(name, str) or not name:
        raise RegistrationError(f"timezone must be a zone name such as 'Europe/Berlin', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RegistrationError(f"unknown timezone {name!r} (an IANA name such as 'Europe/Berlin')") from exc


def parse_schedule(value: str | Schedule) -> Schedule:
    """A schedule from a crontab string (five fields, or @hourly, @daily, @weekly,
    @monthly), its stored ``"@every <seconds>s"`` form, or a Schedule as is.

    Raises RegistrationError that names the problem.
    """
    if isinstance(value, Schedule):
        return value
    if not isinstance(value, str):
        raise RegistrationError(
            f"schedule must be a crontab string or jobworker.every/daily/weekly/monthly(...), got {value!r}"
        )
    text = " ".join(value.split())
    if text.startswith(_EVERY_PREFIX) and text.endswith("s"):
        try:
            return every(float(text[len(_EVERY_PREFIX) : -1]))
        except ValueError:
            pass
    if text.startswith("@"):
        if text not in CRON_SHORTHANDS:
            raise RegistrationError(f"schedule {value!r}: the shorthands are {', '.join(CRON_SHORTHANDS)}")
        return CronSchedule(text)
    if len(text.split(" ")) != 5:
        raise RegistrationError(
            f"schedule {value!r} must have five fields (minute hour day-of-month month day-of-week)"
        )
    if not croniter.is_valid(text):
        raise RegistrationError(f"schedule {value!r} is not a valid crontab string")
    return CronSchedule(text)


def every(interval: timedelta | float) -> IntervalSchedule:
    """A tick every ``interval`` (a timedelta or seconds, at least one second) of real time."""
    if isinstance(interval, bool) or not isinstance(interval, timedelta | int | float):
        raise RegistrationError(f"every() takes a timedelta or a number of seconds, got {interval!r}")
    period = interval if isinstance(interval, timedelta) else timedelta(seconds=interval)
    if period < timedelta(seconds=1):
        raise RegistrationError(f"every() needs an interval of at least one second, got {interval!r}")
    return IntervalSchedule(period)


def _check_field(value: int, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RegistrationError(f"{what} must be an int from {low} to {high}, got {value!r}")
    return value


def daily(hour: int = 0, minute: int = 0) -> CronSchedule:
    """Every day at ``hour:minute`` on the schedule's wall clock."""
    return CronSchedule(f"{_check_field(minute, 'minute', 0, 59)} {_check_field(hour, 'hour', 0, 23)} * * *")


def weekly(weekday: int, hour: int = 0, minute: int = 0) -> CronSchedule:
    """Every week on ``weekday`` (0 = Monday ... 6 = Sunday, as ``datetime.weekday()``) at
    ``hour:minute``."""
    day = (_check_field(weekday, "weekday", 0, 6) + 1) % 7  # cron counts from Sunday = 0
    return CronSchedule(
        f"{_check_field(minute, 'minute', 0, 59)} {_check_field(hour, 'hour', 0, 23)} * * {day}"
    )


def monthly(day: int, hour: int = 0, minute: int = 0) -> CronSchedule:
    """Every month on ``day`` (1-31; as in cron, months without that day are skipped) at
    ``hour:minute``."""
    return CronSchedule(
        f"{_check_field(minute, 'minute', 0, 59)} {_check_field(hour, 'hour', 0, 23)} "
        f"{_check_field(day, 'day', 1, 31)} * *"
    )
