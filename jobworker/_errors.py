"""Errors the worker runtime records for a job, and the reporter of errors outside handlers.

::

    jobqueue.JobQueueError
    ├── JobTimeoutError      (also TimeoutError)  a handler ran past its timeout
    └── InvalidPayloadError  (also ValueError)    a payload failed validation: permanent
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

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


# Recorded as error_type; the public module reads better than the private one.
JobTimeoutError.__module__ = "jobworker"
InvalidPayloadError.__module__ = "jobworker"


class ErrorReporter:
    """Logs errors that happen outside handlers and passes them to the ``on_error`` callback.

    Thread-safe: reporting reads the callback once; a callback that raises is logged.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callback: ErrorCallback | None = None

    def set_callback(self, callback: ErrorCallback | None) -> None:
        """Replace the callback (None removes it)."""
        if callback is not None and not callable(callback):
            raise TypeError(f"on_error needs a callable, got {type(callback).__name__}")
        with self._lock:
            self._callback = callback

    def __call__(self, exc: BaseException, what: str) -> None:
        """Log ``exc`` as happening during ``what`` and hand it to the callback."""
        logger.error("%s: %s: %s", what, type(exc).__name__, exc, exc_info=exc)
        with self._lock:
            callback = self._callback
        if callback is None:
            return
        try:
            callback(exc)
        except Exception:
            logger.exception("the on_error callback raised")
