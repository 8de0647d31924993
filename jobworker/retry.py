"""Retry strategies: when a failed attempt runs again.

Use one per job type, with :func:`jobworker.register_schedule_retry` or the ``retry=``
option of the registration functions::

    import jobworker
    from datetime import timedelta

    jobworker.register("email.send", send, retry=jobworker.retry.linear(timedelta(seconds=30)))
    jobworker.register_schedule_retry("report.build", jobworker.retry.exponential(max=timedelta(minutes=10)))

Each strategy is also a retry scheduler (``strategy(job)`` returns when the next attempt
may start), so it fits wherever a hand-written scheduler does. Jitter multiplies each
delay by a random factor in ``[1 - jitter, 1 + jitter]``, so that jobs that failed
together do not all come back at the same instant. ``max_retry_count`` of the job still
bounds the number of attempts; :func:`none` fails the job at its first error whatever
``max_retry_count`` says.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from jobqueue import Job, RegistrationError

__all__ = ["RetryStrategy", "exponential", "linear", "none"]

#: The default strategy's first delay, cap and jitter.
DEFAULT_BASE = timedelta(seconds=1)
DEFAULT_MAX = timedelta(hours=1)
DEFAULT_JITTER = 0.2


class RetryStrategy:
    """The delay before attempt ``n + 1`` after attempt ``n`` failed; None: do not retry."""

    def __init__(self, jitter: float = 0.0) -> None:
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise RegistrationError(f"jitter must be a number from 0 up to (not including) 1, got {jitter!r}")
        self.jitter = float(jitter)

    def base_delay(self, attempt: int) -> timedelta | None:
        """The delay after failed attempt ``attempt`` (1 for the first), before jitter."""
        raise NotImplementedError

    def delay(self, attempt: int) -> timedelta | None:
        """:meth:`base_delay` with jitter applied; None when the job must not be retried."""
        base = self.base_delay(max(attempt, 1))
        if base is None or not self.jitter:
            return base
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)

    def __call__(self, job: Job) -> datetime:
        """As a retry scheduler: when the next attempt of ``job`` may start."""
        delay = self.delay(job.attempt)
        return datetime.now(UTC) + (delay if delay is not None else timedelta(0))


class _NoRetry(RetryStrategy):
    def base_delay(self, attempt: int) -> timedelta | None:
        return None

    def __repr__(self) -> str:
        return "retry.none()"


class _Linear(RetryStrategy):
    def __init__(self, step: timedelta, maximum: timedelta | None, jitter: float) -> None:
        super().__init__(jitter)
        self.step, self.maximum = step, maximum

    def base_delay(self, attempt: int) -> timedelta | None:
        delay = self.step * attempt
        return delay if self.maximum is None else min(delay, self.maximum)

    def __repr__(self) -> str:
        return f"retry.linear({self.step!r}, max={self.maximum!r}, jitter={self.jitter})"


class _Exponential(RetryStrategy):
    def __init__(self, base: timedelta, maximum: timedelta, jitter: float) -> None:
        super().__init__(jitter)
        self.base, self.maximum = base, maximum

    def base_delay(self, attempt: int) -> timedelta | None:
        exponent = min(attempt - 1, 32)  # 2**32 s is far past any cap
        delay: timedelta = min(self.base * (1 << exponent), self.maximum)
        return delay

    def delay(self, attempt: int) -> timedelta | None:
        delay = super().delay(attempt)
        return None if delay is None else min(delay, self.maximum)  # jitter never passes the cap

    def __repr__(self) -> str:
        return f"retry.exponential({self.base!r}, max={self.maximum!r}, jitter={self.jitter})"


def _duration(value: timedelta | float, what: str) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, timedelta | int | float):
        raise RegistrationError(f"{what} must be a timedelta or a number of seconds, got {value!r}")
    delay = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if delay <= timedelta(0):
        raise RegistrationError(f"{what} must be positive, got {value!r}")
    return delay


def none() -> RetryStrategy:
    """Never retry: the first failure ends the job, whatever its ``max_retry_count``."""
    return _NoRetry()


def linear(
    step: timedelta | float, *, max: timedelta | float | None = None, jitter: float = 0.0
) -> RetryStrategy:
    """Wait ``step`` after the first failure, ``2 * step`` after the second ... (capped at ``max``)."""
    return _Linear(_duration(step, "step"), None if max is None else _duration(max, "max"), jitter)


def exponential(
    base: timedelta | float = DEFAULT_BASE,
    max: timedelta | float = DEFAULT_MAX,
    *,
    jitter: float = DEFAULT_JITTER,
) -> RetryStrategy:
    """Wait ``base``, then twice as long after each further failure, capped at ``max`` (the
    default strategy: about 1 s, 2 s, 4 s ... up to 1 hour, with 20 % jitter)."""
    return _Exponential(_duration(base, "base"), _duration(max, "max"), jitter)


#: What failed jobs of a type without a strategy or scheduler of its own use.
DEFAULT_STRATEGY = exponential()
