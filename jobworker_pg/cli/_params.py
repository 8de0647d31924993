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
