"""Errors the worker runtime records for a job, and the reporter of errors outside handlers.

::

    jobqueue.JobQueueError
    ├── JobTimeoutError      (also TimeoutError)  a handler ran past its timeout
    └── InvalidPayloadError  (also ValueError)    a payload failed validation: permanent

    Snooze                   (an Exception)       raised by a handler: run again later
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta

from jobqueue import JobQueueError

logger = logging.getLogger(__name__)

#: Called with every error that happens outside a handler (database errors, failing hooks).
ErrorCallback = Callable[[BaseException], None]


class JobTimeoutError(JobQueueError, TimeoutError):
    """A handler ran longer than its job type's timeout; the attempt ended with this error."""


class InvalidPayloadError(JobQueueError, ValueError):
    """A job's payload does not validate as the payload type of its typed handler.

    The job fails for good: retrying cannot change the payload.
    """


class Snooze(Exception):
    """Raise from a handler to run the job again after ``delay`` (a timedelta or seconds)
    without using up an attempt: no error is recorded, the job's history notes the snooze,
    and ``max_retry_count`` is untouched (River's JobSnooze, Oban's ``{:snooze, t}``)."""

    def __init__(self, delay: timedelta | float) -> None:
        if isinstance(delay, bool) or not isinstance(delay, timedelta | int | float):
            raise TypeError(f"Snooze takes a timedelta or a number of seconds, got {delay!r}")
        self.delay = delay if isinstance(delay, timedelta) else timedelta(seconds=delay)
        if self.delay < timedelta(0):
            raise ValueError(f"Snooze needs a delay >= 0, got {delay!r}")
        super().__init__(f"snoozed for {self.delay.total_seconds():g} s")


# Recorded as error_type; the public module reads better than the private one.
JobTimeoutError.__module__ = "jobworker"
InvalidPayloadError.__module__ = "jobworker"
Snooze.__module__ = "jobworker"


#: The same error (same type, same activity) is logged at most once per this many seconds.
REPEAT_LOG_SECONDS = 30.0
#: How many distinct errors the repeat filter remembers (the least recent are forgotten).
MAX_TRACKED_ERRORS = 256
# Ids and numbers in an activity ("... for job 0190...", "retrying in 0.4s") are blanked, so
# that the same failure for many jobs is one entry.
_VARYING = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d+(\.\d+)?", re.I)


class ErrorReporter:
    """Logs errors that happen outside handlers and passes them to the ``on_error`` callback.

    During an outage the same error comes back at every heartbeat and retry: it is
    logged once, then at most once per ``REPEAT_LOG_SECONDS`` with the number of
    repeats, so the log grows at a bounded rate; at most ``MAX_TRACKED_ERRORS`` distinct
    errors are remembered for that. An error that will be retried (``retrying=True``) is a
    WARNING without traceback; any other is an ERROR with its traceback the first time.
    The callback sees every one. Thread-safe: reporting reads the callback once; a
    callback that raises is logged.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callback: ErrorCallback | None = None
        # (error type, activity with numbers blanked) -> (last logged at, repeats since)
        self._recent: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()

    def tracked(self) -> int:
        """How many distinct errors the repeat filter remembers now."""
        with self._lock:
            return len(self._recent)

    def set_callback(self, callback: ErrorCallback | None) -> None:
        """Replace the callback (None removes it)."""
        if callback is not None and not callable(callback):
            raise TypeError(f"on_error needs a callable, got {type(callback).__name__}")
        with self._lock:
            self._callback = callback

    def __call__(self, exc: BaseException, what: str, *, retrying: bool = False) -> None:
        """Log ``exc`` as happening during ``what`` and hand it to the callback.
        ``retrying``: the action is retried (a transient failure until it gives up)."""
        key = (type(exc).__qualname__, _VARYING.sub("N", what))
        now = time.monotonic()
        with self._lock:
            entry = self._recent.get(key)
            first = entry is None
            repeats = 0 if entry is None else entry[1]
            log_now = entry is None or now - entry[0] >= REPEAT_LOG_SECONDS
            if log_now:
                self._recent[key] = (now, 0)
            elif entry is not None:
                self._recent[key] = (entry[0], repeats + 1)
            self._recent.move_to_end(key)
            while len(self._recent) > MAX_TRACKED_ERRORS:
                self._recent.popitem(last=False)
            callback = self._callback
        if log_now:
            more = f" ({repeats} more like this in the last {REPEAT_LOG_SECONDS:.0f} s)" if repeats else ""
            if retrying:
                logger.warning("%s: %s: %s%s", what, type(exc).__name__, exc, more)
            else:
                logger.error(
                    "%s: %s: %s%s", what, type(exc).__name__, exc, more, exc_info=exc if first else None
                )
        self._call(callback, exc)

    def pass_on(self, exc: BaseException) -> None:
        """Hand ``exc`` to the callback only, for errors their finder has logged already
        (the notification listener of jobworker_pg)."""
        with self._lock:
            callback = self._callback
        self._call(callback, exc)

    @staticmethod
    def _call(callback: ErrorCallback | None, exc: BaseException) -> None:
        if callback is None:
            return
        try:
            callback(exc)
        except Exception:
            logger.exception("the on_error callback raised")
