"""The overview's per-minute chart, as bars for an inline SVG (no chart library, no script)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WIDTH = 600
HEIGHT = 120
MINUTES = 60


@dataclass(frozen=True)
class Bar:
    """One minute: its x position, and the heights of its succeeded and failed parts."""

    x: float
    width: float
    minute: datetime
    succeeded: int
    failed: int
    succeeded_height: float
    failed_height: float


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    peak: int
    width: int = WIDTH
    height: int = HEIGHT


def per_minute_chart(rows: list[tuple[datetime, int, int]], now: datetime) -> Chart:
    """Bars for the last hour ending at ``now`` (minutes without jobs are empty bars)."""
    counts = {minute: (succeeded, failed) for minute, succeeded, failed in rows}
    last = now.replace(second=0, microsecond=0)
    minutes = [last - timedelta(minutes=MINUTES - 1 - i) for i in range(MINUTES)]
    peak = max([s + f for s, f in counts.values()] or [0])
    scale = (HEIGHT - 2) / peak if peak else 0.0
    step = WIDTH / MINUTES
    bars = []
    for i, minute in enumerate(minutes):
        succeeded, failed = counts.get(minute, (0, 0))
        bars.append(
            Bar(
                x=round(i * step, 2),
                width=round(step - 1, 2),
                minute=minute,
                succeeded=succeeded,
                failed=failed,
                succeeded_height=round(succeeded * scale, 2),
                failed_height=round(failed * scale, 2),
            )
        )
    return Chart(bars=bars, peak=peak)
