"""Click parameter types of the jobqueue command."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import click

_DURATION = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


class Duration(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic from click 8.2 on
    """A duration: seconds (``90``, ``0.5``) or a number with a unit (``500ms``, ``30s``,
    ``5m``, ``12h``, ``7d``, ``2w``). Converted to a timedelta."""

    name = "duration"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = _DURATION.match(str(value))
        if match is None:
            self.fail(f"{value!r} is not a duration (e.g. 30, 30s, 5m, 12h, 7d)", param, ctx)
        result = timedelta(seconds=float(match["number"]) * _UNITS[match["unit"]])
        if result <= timedelta(0) and not self.allow_zero:
            self.fail(f"{value!r} must be longer than zero", param, ctx)
        return result


DURATION = Duration()
DURATION_OR_ZERO = Duration(allow_zero=True)


class QueueWeight(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic from click 8.2 on
    """``NAME`` or ``NAME:WEIGHT`` (a positive int), as ``(name, weight or None)``."""

    name = "queue"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int | None]:
        if isinstance(value, tuple):
            return value
        name, sep, weight = str(value).rpartition(":")
        if not sep:
            return str(value), None
        if not name or not weight.isdigit() or int(weight) < 1:
            self.fail(f"{value!r} is not NAME or NAME:WEIGHT with a positive weight", param, ctx)
        return name, int(weight)


class Rate(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic from click 8.2 on
    """``COUNT/DURATION``: ``50/s``, ``50/1s``, ``1000/5m``, as ``(count, timedelta)``."""

    name = "rate"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, timedelta]:
        if isinstance(value, tuple):
            return value
        count, sep, per = str(value).partition("/")
        if not sep or not count.strip().isdigit() or int(count) < 1:
            self.fail(f"{value!r} is not COUNT/DURATION (e.g. 50/s, 1000/5m)", param, ctx)
        per = per.strip()
        if per and per[0].isalpha():
            per = "1" + per  # 50/s is 50/1s
        return int(count), DURATION.convert(per, param, ctx)


QUEUE_WEIGHT = QueueWeight()
RATE = Rate()


class Prefetch(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic from click 8.2 on
    """``auto`` or a number of jobs (0 or more)."""

    name = "prefetch"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif str(value).strip().lower() == "auto":
            return "auto"
        else:
            try:
                number = int(str(value))
            except ValueError:
                self.fail(f"{value!r} is neither 'auto' nor a number of jobs", param, ctx)
        if number < 0:
            self.fail(f"{value!r} must not be negative", param, ctx)
        return number


PREFETCH = Prefetch()


#: What ``KEEP`` returns for "forever".
FOREVER = "forever"


class Keep(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic from click 8.2 on
    """How long to keep finished jobs: a duration (see :class:`Duration`, 0 allowed) or ``forever``."""

    name = "keep"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta | str:
        if isinstance(value, str) and value.strip().lower() == FOREVER:
            return FOREVER
        return DURATION_OR_ZERO.convert(value, param, ctx)


KEEP = Keep()
