"""How many jobs a pool claims ahead of its free threads (``prefetch``).

Fixed (``prefetch=n``), or adaptive (``prefetch="auto"``, the default): as many
jobs as the pool's threads get through in one claim round trip, measured as
they run, and never more than ``AUTO_PREFETCH_LIMIT``. So short jobs come from
memory, without a round trip each, and a job claimed ahead waits about one
claim round trip before it starts; jobs that take longer than a round trip
are not claimed ahead at all. It follows the median of the recent jobs (one
job delayed by a busy machine does not stop it), grows by doubling at most
once per claim, and drops to nothing at once when a job runs half a second or
longer. What a SIGKILL then costs is bounded: at most the jobs held ahead
(never more than the limit) count a crash attempt without having run.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Literal

#: ``prefetch`` value that makes the claim-ahead adaptive.
AUTO: Literal["auto"] = "auto"
#: The most jobs an adaptive pool holds ahead of its threads.
AUTO_PREFETCH_LIMIT = 64
#: A job that ran this long stops an adaptive claim-ahead at once.
LONG_JOB_SECONDS = 0.5
# Weight of the newest claim time in its running average.
_SMOOTHING = 0.1
# The claim-ahead follows the median of this many recent jobs.
_RECENT_JOBS = 32


class ClaimAhead:
    """The current claim-ahead of one pool. Not thread-safe: the caller holds its lock."""

    __slots__ = ("_claim_seconds", "_recent_jobs", "_width", "adaptive", "limit", "value")

    def __init__(self, width: int, prefetch: int | Literal["auto"]) -> None:
        self._width = width
        self.adaptive = prefetch == AUTO
        self.limit = AUTO_PREFETCH_LIMIT if prefetch == AUTO else int(prefetch)
        # Adaptive: nothing ahead until a claim and a job have been measured.
        self.value = 0 if self.adaptive else self.limit
        self._claim_seconds: float | None = None
        self._recent_jobs: deque[float] = deque(maxlen=_RECENT_JOBS)

    def claim_took(self, seconds: float) -> None:
        """A claim round trip took ``seconds``: set the claim-ahead for the next claims. It
        grows by doubling at most per claim, so that a few quick jobs never claim the whole
        limit at once, and follows the median of the recent jobs, so that one job delayed
        by the machine (a descheduled thread, a GC pause) does not stop it."""
        if not self.adaptive:
            return
        self._claim_seconds = _average(self._claim_seconds, seconds)
        if not self._recent_jobs:
            return
        typical = statistics.median(self._recent_jobs)
        per_round = self._width * self._claim_seconds / max(typical, 1e-9)  # jobs ended per claim
        self.value = min(self.limit, int(per_round), max(1, 2 * self.value))

    def job_ran(self, seconds: float) -> None:
        """A handler ran for ``seconds``; a long one (LONG_JOB_SECONDS or more) stops the
        claim-ahead at once: such jobs must not wait behind each other in memory."""
        if self.adaptive:
            self._recent_jobs.append(seconds)
            if seconds >= LONG_JOB_SECONDS:
                self.value = 0


def _average(current: float | None, sample: float) -> float:
    return sample if current is None else current + _SMOOTHING * (sample - current)
