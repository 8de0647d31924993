"""The maintenance thread: one heartbeat for all in-flight jobs, the reaper, timeouts and
retention.

Every ``heartbeat_interval`` it sends one ``heartbeat`` with every claim this
pool holds (running jobs and outcomes not yet saved); every ``reaper_interval``
it reaps jobs whose worker died; whenever a handler's deadline passes it ends
that attempt with a timeout.

The reaper only runs once this process has reached the database without a
failure for ``dead_for``: after an outage (or at start-up) every live worker
first gets the time to renew its heartbeats, so that a database restart or a
network cut longer than ``dead_for`` does not make live jobs look dead. The
heartbeat goes out even with no claims, so an idle worker notices outages too.

Every ``retention.interval`` it prunes finished jobs and bundles past their
retention (see :mod:`jobworker._retention`); the database lets one process at a
time do that. A round that deleted its most is followed by the next after a short
pause, until a round finds less.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from uuid import UUID

from jobworker._database import WorkerDatabase
from jobworker._errors import ErrorReporter
from jobworker._log import job_extra
from jobworker._retention import DEFAULT_PRUNE_MAX_BATCHES, PRUNE_BACKLOG_MIN_PAUSE_SECONDS
from jobworker._settings import WorkerSettings
from jobworker._slots import Run, Slots

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Maintenance:
    """Owns the thread ``jobworker-maintenance``."""

    def __init__(
        self,
        database: WorkerDatabase,
        settings: WorkerSettings,
        slots: Slots,
        unsaved_claims: Callable[[], list[tuple[UUID, UUID]]],
        on_timeout: Callable[[Run], None],
        on_reaped: Callable[[int], None],
        report: ErrorReporter,
        name: str,
    ) -> None:
        self._database = database
        self._settings = settings
        self._slots = slots
        self._unsaved_claims = unsaved_claims
        self._on_timeout = on_timeout
        self._on_reaped = on_reaped
        self._report = report
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        # When a database call last failed; start-up counts as one (the state is unknown).
        self._last_failure = time.monotonic()

    def start(self) -> None:
        """Start the maintenance thread."""
        self._thread.start()

    def stop(self, join_timeout: float) -> None:
        """Stop heartbeats, reaping and timeouts; wait up to ``join_timeout``."""
        self._stopping.set()
        self._slots.poke()
        if self._thread.is_alive():
            self._thread.join(join_timeout)

    def _loop(self) -> None:
        heartbeat_every = self._settings.heartbeat_interval.total_seconds()
        reap_every = self._settings.effective_reaper_interval.total_seconds()
        now = time.monotonic()
        next_heartbeat = now + heartbeat_every
        next_reap = now  # reap once at start
        retention = self._settings.retention
        prune_every = retention.interval.total_seconds()
        next_prune = now if retention.prunes_anything else float("inf")
        while not self._stopping.is_set():
            for run in self._slots.expire():
                try:
                    self._on_timeout(run)
                except Exception as exc:
                    self._report(exc, f"ending timed-out job {run.job.id}")
            now = time.monotonic()
            if now >= next_heartbeat:
                next_heartbeat = now + heartbeat_every
                self._guard(self._heartbeat, "sending the heartbeat")
            if now >= next_reap:
                next_reap = now + reap_every
                if now - self._last_failure >= self._settings.dead_for.total_seconds():
                    self._guard(self._reap, "reaping dead jobs")
            if now >= next_prune:
                backlog = self._guard(self._prune, "deleting finished jobs past their retention")
                ended = time.monotonic()
                pause = max(PRUNE_BACKLOG_MIN_PAUSE_SECONDS, ended - now) if backlog else prune_every
                next_prune = ended + pause
            wake_at = min(next_heartbeat, next_reap, next_prune)
            deadline = self._slots.next_deadline()
            if deadline is not None:
                wake_at = min(wake_at, deadline)
            if not self._stopping.is_set():
                self._slots.wait_changed(wake_at - time.monotonic())

    def _guard(self, action: Callable[[], T], what: str) -> T | None:
        """``action()``, or None when it raised (reported, retried at the next interval)."""
        try:
            return action()
        except Exception as exc:
            self._last_failure = time.monotonic()
            self._report(exc, what, retrying=True)
            return None

    def _heartbeat(self) -> None:
        claims = self._slots.claims() + self._unsaved_claims()
        alive = self._database.heartbeat(claims)
        lost = {job_id for job_id, _ in claims} - alive
        for run in self._slots.cancel(lost):
            logger.warning(
                "job %s was reclaimed or reset elsewhere; this attempt's outcome will be ignored",
                run.job.id,
                extra=job_extra(run.job, "lost"),
            )

    def _reap(self) -> None:
        reaped = self._database.reap_dead_jobs(self._settings.dead_for)
        if reaped:
            logger.info("requeued or failed %d jobs whose worker died", reaped)
            self._on_reaped(reaped)

    def _prune(self) -> bool:
        """One pruning round; True when it deleted its most (more may be waiting)."""
        retention = self._settings.retention
        deleted = self._database.prune_finished(retention)
        if not deleted:
            return False
        logger.info("deleted %d finished jobs and bundles past their retention", deleted)
        # A round deletes at most this many jobs (and as many bundles).
        return deleted >= retention.batch_size * DEFAULT_PRUNE_MAX_BATCHES
