"""Durations in the API: a timedelta or a number of seconds."""

from __future__ import annotations

import math
from datetime import timedelta

#: A duration: a timedelta or a number of seconds.
Duration = timedelta | float | int


def to_timedelta(value: Duration, what: str, *, allow_zero: bool = False) -> timedelta:
    """Convert a duration to a timedelta; ValueError for anything but a finite positive one
    (or zero when ``allow_zero``)."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a timedelta or a number of seconds, got {type(value).__name__}")
    elif not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    else:
        result = timedelta(seconds=value)
    if result < timedelta(0) or (result == timedelta(0) and not allow_zero):
        raise ValueError(f"{what} must be positive, got {value!r}")
    return result
