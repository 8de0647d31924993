"""Cheap progress reporting for the worker and demo commands.

Attempts are counted in-process by an after-job hook (no query per job); the
queue depth comes from one indexed count query every few seconds. On a
terminal the summary is one line rewritten in place (log records are printed
above it); otherwise it is a plain line every ``interval``.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

import psycopg

from jobqueue import Job
from jobworker_pg._pooler import with_prepare_threshold
from jobworker_pg._queries import q
from jobworker_pg.cli._target import CONNECT_TIMEOUT, Target

logger = logging.getLogger(__name__)

#: The rate is measured over this many seconds.
RATE_WINDOW = 10.0


class Counters:
    """Attempts that ended in this process, as an after-job hook. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def after_job(self, job: Job, error: BaseException | None) -> None:
        """The hook: count one attempt (``error`` None: succeeded)."""
        with self._lock:
            if error is None:
                self.done += 1
            else:
                self.failed += 1

    def snapshot(self) -> tuple[int, int, float]:
        """(done, failed, attempts per second over the last RATE_WINDOW seconds)."""
        now = time.monotonic()
        with self._lock:
            done, failed = self.done, self.failed
            self._samples.append((now, done + failed))
            while len(self._samples) > 1 and now - self._samples[0][0] > RATE_WINDOW:
                self._samples.popleft()
            first_time, first_count = self._samples[0]
        if now - first_time < 0.5:  # too short to tell: average since start
            elapsed = now - self.started
            return done, failed, (done + failed) / elapsed if elapsed > 0 else 0.0
        return done, failed, (done + failed - first_count) / (now - first_time)


class QueueDepth:
    """Jobs of ``job_types`` due and waiting, and running, from one count query at most every
    ``every`` seconds (a worker counts only what it serves: others' jobs are not its queue).
    It is also the worker's view of its database: :attr:`failing_for`."""

    def __init__(self, target: Target, every: float, job_types: Sequence[str]) -> None:
        self._target = target
        self._every = every
        self._types = list(job_types)
        self._last_ok = time.monotonic()
        self._conn: psycopg.Connection[Any] | None = None
        self._last = -float("inf")
        self._value: tuple[int, int] | None = None

    def get(self) -> tuple[int, int] | None:
        """(queued, running), possibly a few seconds old; None when the database does not answer."""
        now = time.monotonic()
        if now - self._last < self._every:
            return self._value
        self._last = now
        try:
            if self._conn is None or self._conn.closed:
                # It runs one query over and over, which psycopg would prepare: behind PgBouncer
                # in transaction mode $JOBQUEUE_PREPARE_THRESHOLD=none must reach it too.
                self._conn = psycopg.connect(
                    self._target.url,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT,
                    **with_prepare_threshold(None),
                )
            row = self._conn.execute(q("queue_depth"), {"types": self._types}).fetchone()
            self._value = (int(row[0]), int(row[1])) if row else None
            self._last_ok = time.monotonic()
        except psycopg.Error as exc:
            logger.debug("queue depth query failed: %s", self._target.scrub(str(exc)))
            self._value = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        return self._value

    @property
    def failing_for(self) -> float:
        """Seconds since the count query last succeeded (0 while it does)."""
        return 0.0 if self._value is not None else time.monotonic() - self._last_ok

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class LiveLine:
    """A status line rewritten in place on a terminal; thread-safe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._text = ""

    def update(self, text: str) -> None:
        """Replace the line with ``text``."""
        with self._lock:
            self._text = text
            self._stream.write("\r\x1b[K" + text)
            self._stream.flush()

    def above(self, text: str) -> None:
        """Print ``text`` (a log record) above the line, then redraw the line."""
        with self._lock:
            self._stream.write("\r\x1b[K" + text + "\n" + self._text)
            self._stream.flush()

    def finish(self) -> None:
        """End the line (the next output starts on a fresh line)."""
        with self._lock:
            if self._text:
                self._stream.write("\n")
                self._stream.flush()
            self._text = ""


class _LiveLineHandler(logging.Handler):
    def __init__(self, line: LiveLine) -> None:
        super().__init__()
        self._line = line

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._line.above(self.format(record))
        except Exception:
            self.handleError(record)


class Reporter:
    """Shows ``summary()`` text: live on a terminal, else a timestamped line every ``interval``."""

    def __init__(self, interval: float, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()
        self._interval = interval
        self._line = LiveLine(self.stream) if self.live else None
        self._next = time.monotonic() + interval

    def route_logging(self) -> None:
        """On a terminal, print log records above the live line instead of through it."""
        if self._line is None:
            return
        root = logging.getLogger()
        formatter = root.handlers[0].formatter if root.handlers else None
        handler = _LiveLineHandler(self._line)
        handler.setFormatter(formatter)
        root.handlers = [handler]

    def show(self, text: str, *, force: bool = False) -> None:
        """Show ``text`` now on a terminal; otherwise when the interval passed (or ``force``)."""
        if self._line is not None:
            self._line.update(text)
            return
        now = time.monotonic()
        if force or now >= self._next:
            self._next = now + self._interval
            stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
            self.stream.write(f"{stamp} {text}\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        """A one-off message on its own line."""
        if self._line is not None:
            self._line.above(text)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def finish(self) -> None:
        """End the live line."""
        if self._line is not None:
            self._line.finish()


def summary(counters: Counters, depth: tuple[int, int] | None) -> str:
    """``"1234 done, 5 failed, 118.2 jobs/s, queue 560, running 8"`` (queue left out when unknown)."""
    done, failed, rate = counters.snapshot()
    queue = f", queue {depth[0]}, running {depth[1]}" if depth is not None else ""
    return f"{done} done, {failed} failed, {rate:.1f} jobs/s{queue}"
