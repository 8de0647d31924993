"""When ticks fall: crontab strings and the helpers, across DST changes in two time zones
(America/New_York and Europe/Berlin), and the catch-up policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

import jobworker
from jobqueue import RegistrationError
from jobworker._periodic import CATCH_UP_GRACE, MAX_CATCH_UP_TICKS, periodic_spec, ticks_to_enqueue
from jobworker._schedules import Schedule, parse_schedule, to_instant

NEW_YORK = ZoneInfo(
    "America/New_York"
)  # 2026: forward 8 March 02:00 -> 03:00, back 1 November 02:00 -> 01:00
BERLIN = ZoneInfo("Europe/Berlin")  # 2026: forward 29 March 02:00 -> 03:00, back 25 October 03:00 -> 02:00


def _walk(schedule: Schedule, start: datetime, tz: tzinfo, n: int) -> list[str]:
    """The next ``n`` ticks after ``start``, as local ISO times."""
    out = []
    moment = start
    for _ in range(n):
        moment = schedule.next_after(moment, tz)
        out.append(moment.astimezone(tz).isoformat())
    return out


@pytest.mark.parametrize(
    ("tz", "day_before"),
    [
        (NEW_YORK, datetime(2026, 3, 7, 12, tzinfo=NEW_YORK)),
        (BERLIN, datetime(2026, 3, 28, 12, tzinfo=BERLIN)),
    ],
)
def test_a_0230_job_on_a_spring_forward_day_runs_once_right_after_the_gap(
    tz: ZoneInfo, day_before: datetime
) -> None:
    ticks = _walk(jobworker.daily(2, 30), day_before, tz, 3)
    day = day_before.date() + timedelta(days=1)
    assert ticks[0] == datetime(day.year, day.month, day.day, 3, 0, tzinfo=tz).isoformat()
    assert ticks[1] == datetime(day.year, day.month, day.day + 1, 2, 30, tzinfo=tz).isoformat()
    assert len(set(ticks)) == 3


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        (NEW_YORK, ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
        (BERLIN, ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
    ],
)
def test_a_repeated_time_on_a_fall_back_day_runs_once_at_its_first_occurrence(
    tz: ZoneInfo, expected: list[str]
) -> None:
    hour = 1 if tz is NEW_YORK else 2
    start = datetime(2026, 10, 31, 12, tzinfo=tz) if tz is NEW_YORK else datetime(2026, 10, 24, 12, tzinfo=tz)
    assert _walk(jobworker.daily(hour, 30), start, tz, 2) == expected


def test_every_half_hour_collapses_the_skipped_hour_into_one_run() -> None:
    ticks = _walk(parse_schedule("*/30 * * * *"), datetime(2026, 3, 8, 1, 0, tzinfo=NEW_YORK), NEW_YORK, 4)
    assert ticks == [
        "2026-03-08T01:30:00-05:00",
        "2026-03-08T03:00:00-04:00",  # 02:00 and 02:30 do not exist: one run when the gap ends
        "2026-03-08T03:30:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]


def test_hourly_in_berlin_runs_the_repeated_hour_once() -> None:
    ticks = _walk(parse_schedule("@hourly"), datetime(2026, 10, 25, 0, 30, tzinfo=BERLIN), BERLIN, 4)
    assert ticks == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",  # the first 02:00; the second one (+01:00) is skipped
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T04:00:00+01:00",
    ]


@pytest.mark.parametrize("tz", [NEW_YORK, BERLIN])
def test_latest_ticks_agrees_with_next_after_across_both_changes(tz: ZoneInfo) -> None:
    schedule = parse_schedule("*/15 * * * *")
    for start in (datetime(2026, 3, 7, tzinfo=tz), datetime(2026, 10, 24, tzinfo=tz)):
        until = start + timedelta(days=3)
        walked = []
        moment = start
        while (moment := schedule.next_after(moment, tz)) <= until:
            walked.append(moment)
        assert schedule.latest_ticks(start, until, tz, 10_000) == walked
        assert schedule.latest_ticks(start, until, tz, 5) == walked[-5:]


def test_every_counts_real_time_from_the_epoch() -> None:
    schedule = jobworker.every(timedelta(minutes=5))
    start = datetime(2026, 3, 8, 6, 53, tzinfo=UTC)  # across New York's spring-forward instant
    ticks = _walk(schedule, start, NEW_YORK, 3)
    # five minutes of real time apart, though the wall clock jumps an hour in between
    assert ticks == ["2026-03-08T01:55:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:05:00-04:00"]
    assert schedule.expression == "@every 300s"
    assert parse_schedule(schedule.expression) == schedule


def test_weekly_counts_weekdays_from_monday_as_python_does() -> None:
    schedule = jobworker.weekly(0, 9, 15)  # Mondays 09:15
    tick = schedule.next_after(datetime(2026, 12, 1, tzinfo=UTC), UTC)  # a Tuesday
    assert tick == datetime(2026, 12, 7, 9, 15, tzinfo=UTC)
    assert tick.weekday() == 0


def test_monthly_skips_months_without_the_day() -> None:
    ticks = _walk(jobworker.monthly(31, 6), datetime(2026, 1, 1, tzinfo=UTC), UTC, 3)
    assert ticks == ["2026-01-31T06:00:00+00:00", "2026-03-31T06:00:00+00:00", "2026-05-31T06:00:00+00:00"]


def test_to_instant_of_a_skipped_time_is_the_end_of_the_gap() -> None:
    assert to_instant(datetime(2026, 3, 29, 2, 30), BERLIN) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("* * * *", "five fields"),
        ("* * * * * *", "five fields"),
        ("61 * * * *", "not a valid crontab"),
        ("@yearly", "shorthands"),
        (42, "crontab string"),
    ],
)
def test_bad_schedules_are_rejected(schedule: object, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        parse_schedule(schedule)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: jobworker.every(0.5), "at least one second"),
        (lambda: jobworker.daily(24, 0), "hour"),
        (lambda: jobworker.weekly(7), "weekday"),
        (lambda: jobworker.monthly(0), "day"),
        (lambda: periodic_spec("n", "@daily", "t", timezone="Mars/Olympus"), "unknown timezone"),
        (lambda: periodic_spec("n", "@daily", "t", catch_up="some"), "catch_up"),
        (lambda: periodic_spec("", "@daily", "t"), "periodic name"),
    ],
)
def test_bad_helper_arguments_are_rejected(make: object, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        make()  # type: ignore[operator]


def _due(n: int, step: timedelta, last: datetime) -> list[datetime]:
    return [last - step * (n - 1 - i) for i in range(n)]


def test_catch_up_policies_after_a_ten_tick_outage() -> None:
    step = timedelta(minutes=5)
    last = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    due = _due(10, step, last)
    late = last + CATCH_UP_GRACE + timedelta(seconds=1)
    spec = periodic_spec("n", jobworker.every(step), "t")
    assert ticks_to_enqueue(spec, due, late) == [last]
    assert ticks_to_enqueue(periodic_spec("n", jobworker.every(step), "t", catch_up="all"), due, late) == due
    none = periodic_spec("n", jobworker.every(step), "t", catch_up="none")
    assert ticks_to_enqueue(none, due, late) == []
    assert ticks_to_enqueue(none, due, last + timedelta(seconds=2)) == [last]  # on time: not missed


def test_catch_up_all_is_bounded() -> None:
    step = timedelta(seconds=1)
    last = datetime(2026, 12, 1, tzinfo=UTC)
    due = _due(MAX_CATCH_UP_TICKS + 50, step, last)
    spec = periodic_spec("n", jobworker.every(step), "t", catch_up="all")
    assert ticks_to_enqueue(spec, due, last) == due[-MAX_CATCH_UP_TICKS:]
