"""What the dashboard's pages show, read from the database: every read goes through an index.

Counts of finished jobs past :data:`EXACT_COUNT_CAP` come from the planner's
statistics (the page marks them as estimates): an exact count of a million rows
is a scan no page can afford.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, LiteralString
from uuid import UUID

import psycopg
import psycopg_pool

from jobqueue import Job, JobBundle, QueueInfo, RateLimit
from jobworker_pg._errors import translate_errors
from jobworker_pg._rows import BUNDLE_COLUMNS, job_from_row
from jobworker_pg.dashboard._sql import dq

#: Finished jobs are counted exactly up to this many; past it the planner estimates.
EXACT_COUNT_CAP = 100_000
#: Rows on one page of jobs or bundles.
PAGE_SIZE = 50
#: Jobs of a bundle shown on its page.
BUNDLE_JOBS_SHOWN = 500
#: A dashboard query that runs longer is cancelled (a filter too rare for any index).
STATEMENT_TIMEOUT_MS = 5_000
#: Jobs one bulk retry resets at most.
BULK_RETRY_LIMIT = 10_000


class StateFilter(enum.StrEnum):
    """The states the jobs page filters by, each read through its own index."""

    ALL = "all"
    WAITING = "waiting"
    RUNNING = "running"
    FAILED = "failed"
    SUCCEEDED = "succeeded"


#: Each state's condition in the jobs page's query (those of the partial indexes, verbatim).
_STATE_CONDITION: dict[StateFilter, LiteralString] = {
    StateFilter.ALL: "true",
    StateFilter.WAITING: "started_at is null and stopped_at is null",  # pending, scheduled, retrying
    StateFilter.RUNNING: "started_at is not null and stopped_at is null",
    StateFilter.FAILED: "stopped_at is not null and error_msg is not null",  # and cancelled (job_failed_idx)
    StateFilter.SUCCEEDED: "stopped_at is not null and error_msg is null",
}
_JOBS_QUERY: dict[StateFilter, LiteralString] = {
    state: dq("dash_jobs").replace("true /* state */", condition)
    for state, condition in _STATE_CONDITION.items()
}


@dataclass
class TypeCounts:
    """One job type's row on the overview."""

    type: str
    pending: int = 0
    scheduled: int = 0
    retrying: int = 0
    running: int = 0
    failed: int = 0
    cancelled: int = 0
    succeeded_last_hour: int = 0
    failed_last_hour: int = 0


@dataclass
class Overview:
    """Everything the overview page shows."""

    types: list[TypeCounts]
    totals: TypeCounts
    finished: int
    finished_estimated: bool
    succeeded: int  # finished - failed - cancelled (an estimate when finished is)
    queue_depth: int  # due and waiting
    oldest_due_age: float | None  # seconds
    per_minute: list[tuple[datetime, int, int]]
    bundles_open: int
    bundles_total: int
    now: datetime


@dataclass
class JobFilter:
    """The jobs page's filter; None means "any"."""

    state: StateFilter = StateFilter.ALL
    type: str | None = None
    origin: str | None = None
    bundle: UUID | None = None
    queue: str | None = None
    before: UUID | None = None


@dataclass
class Worker:
    """A registered worker process."""

    id: UUID
    host: str
    pid: int
    threads: int
    busy: int
    job_types: list[str]
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age: float


@dataclass
class BundlePage:
    """A bundle, its first jobs and its completion job."""

    bundle: JobBundle
    jobs: list[Job]
    completion: tuple[UUID, datetime | None, str | None] | None
    more_jobs: bool = field(default=False)


class DashboardData:
    """Reads for the dashboard on a small pool of its own. Thread-safe."""

    def __init__(self, conninfo: str, *, max_connections: int = 4) -> None:
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = psycopg_pool.ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_connections,
            # No prepared statements: each query is planned with its values, so the optional
            # filters fold away and the partial indexes match.
            kwargs={
                "autocommit": True,
                "prepare_threshold": None,
                "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            },
            name="jobqueue-dashboard",
            open=True,
        )

    def close(self) -> None:
        """Close the pool (idempotent)."""
        self._pool.close()

    def _rows(self, action: str, query: LiteralString, params: dict[str, Any] | None = None) -> list[Any]:
        with translate_errors(action), self._pool.connection() as conn:
            return conn.execute(query, params).fetchall()

    # -- overview --------------------------------------------------------------------------

    def overview(self) -> Overview:
        """Counts by state and type, queue depth, per-minute outcomes of the last hour."""
        types: dict[str, TypeCounts] = {}

        def of(job_type: str) -> TypeCounts:
            return types.setdefault(job_type, TypeCounts(job_type))

        with translate_errors("dashboard overview"), self._pool.connection() as conn:
            oldest: datetime | None = None
            due_total = 0
            for job_type, pending, scheduled, retrying, due, oldest_due in conn.execute(
                dq("dash_waiting_by_type")
            ):
                row = of(job_type)
                row.pending, row.scheduled, row.retrying = pending, scheduled, retrying
                due_total += due
                if oldest_due is not None and (oldest is None or oldest_due < oldest):
                    oldest = oldest_due
            for job_type, running in conn.execute(dq("dash_running_by_type")):
                of(job_type).running = running
            for job_type, failed, cancelled in conn.execute(dq("dash_failed_by_type")):
                row = of(job_type)
                row.failed, row.cancelled = failed, cancelled
            for job_type, succeeded, failed in conn.execute(dq("dash_recent_by_type")):
                row = of(job_type)
                row.succeeded_last_hour, row.failed_last_hour = succeeded, failed
            per_minute = [(m, s, f) for m, s, f in conn.execute(dq("dash_per_minute"))]
            (finished,) = conn.execute(dq("dash_finished_capped"), {"cap": EXACT_COUNT_CAP}).fetchall()[0]
            estimated = finished >= EXACT_COUNT_CAP
            if estimated:
                plan = conn.execute(dq("dash_finished_estimate")).fetchall()[0][0]
                finished = max(finished, int(plan[0]["Plan"]["Plan Rows"]))
            bundles_open, bundles_total = conn.execute(dq("dash_bundle_counts")).fetchall()[0]
            row_now = conn.execute(dq("dash_now")).fetchall()[0][0]
        ordered = sorted(types.values(), key=lambda t: t.type)
        totals = TypeCounts("all")
        for counts in ordered:
            for name in (
                "pending",
                "scheduled",
                "retrying",
                "running",
                "failed",
                "cancelled",
                "succeeded_last_hour",
                "failed_last_hour",
            ):
                setattr(totals, name, getattr(totals, name) + getattr(counts, name))
        return Overview(
            types=ordered,
            totals=totals,
            finished=finished,
            finished_estimated=estimated,
            succeeded=max(0, finished - totals.failed - totals.cancelled),
            queue_depth=due_total,
            oldest_due_age=None if oldest is None else (row_now - oldest).total_seconds(),
            per_minute=per_minute,
            bundles_open=bundles_open,
            bundles_total=bundles_total,
            now=row_now,
        )

    # -- jobs -------------------------------------------------------------------------------

    def jobs(self, f: JobFilter, limit: int = PAGE_SIZE) -> list[Job]:
        """One page of jobs matching ``f``, newest first, after ``f.before`` (keyset)."""
        params = {
            "before": f.before,
            "type": f.type,
            "origin": f.origin,
            "bundle": f.bundle,
            "queue": f.queue,
            "limit": limit,
        }
        return [job_from_row(row) for row in self._rows("dashboard jobs", _JOBS_QUERY[f.state], params)]

    def trace_context(self, job_id: UUID) -> dict[str, str] | None:
        """The trace context stored with a job, if any."""
        rows = self._rows("dashboard job", dq("dash_job_trace"), {"id": job_id})
        return rows[0][0] if rows else None

    # -- bundles ----------------------------------------------------------------------------

    def bundles(self, before: UUID | None, limit: int = PAGE_SIZE) -> list[JobBundle]:
        """One page of bundles, newest first."""
        rows = self._rows("dashboard bundles", dq("dash_bundles"), {"before": before, "limit": limit})
        return [
            JobBundle.model_construct(**dict(zip(BUNDLE_COLUMNS, row, strict=True)), jobs=[]) for row in rows
        ]

    def bundle(self, bundle_id: UUID) -> BundlePage | None:
        """A bundle with its first jobs and its completion job; None when there is none."""
        with translate_errors("dashboard bundle"), self._pool.connection() as conn:
            rows = conn.execute(dq("dash_bundle"), {"id": bundle_id}).fetchall()
            if not rows:
                return None
            bundle = JobBundle.model_construct(**dict(zip(BUNDLE_COLUMNS, rows[0], strict=True)), jobs=[])
            job_rows = conn.execute(
                dq("dash_bundle_jobs"), {"id": bundle_id, "limit": BUNDLE_JOBS_SHOWN + 1}
            ).fetchall()
            completion = conn.execute(dq("dash_bundle_completion"), {"id": bundle_id}).fetchall()
        jobs = [job_from_row(row) for row in job_rows[:BUNDLE_JOBS_SHOWN]]
        return BundlePage(
            bundle=bundle,
            jobs=jobs,
            completion=(completion[0][0], completion[0][1], completion[0][2]) if completion else None,
            more_jobs=len(job_rows) > BUNDLE_JOBS_SHOWN,
        )

    # -- workers ----------------------------------------------------------------------------

    def workers(self) -> list[Worker]:
        """The registered worker processes, most recent heartbeat first."""
        return [Worker(*row) for row in self._rows("dashboard workers", dq("dash_workers"))]

    # -- queues -----------------------------------------------------------------------------

    def queues(self) -> list[QueueInfo]:
        """Every queue with rules or unstopped jobs, by name, with its waiting and running
        jobs (counted through the indexes of unstopped jobs, never the finished ones)."""
        return [
            QueueInfo(
                name,
                concurrency,
                per_key,
                None if rate_count is None else RateLimit(rate_count, timedelta(seconds=rate_per)),
                paused,
                waiting,
                running,
            )
            for name, concurrency, per_key, rate_count, rate_per, paused, waiting, running in self._rows(
                "dashboard queues", dq("dash_queues")
            )
        ]

    # -- bulk actions -----------------------------------------------------------------------

    def count_failed_of_type(self, job_type: str) -> int:
        """Failed jobs of ``job_type`` (what a bulk retry resets, up to BULK_RETRY_LIMIT)."""
        return int(self._rows("dashboard bulk", dq("dash_count_failed_of_type"), {"type": job_type})[0][0])

    def failed_ids_of_type(self, job_type: str) -> list[UUID]:
        """Up to BULK_RETRY_LIMIT failed jobs of ``job_type``."""
        rows = self._rows(
            "dashboard bulk", dq("dash_failed_ids_of_type"), {"type": job_type, "limit": BULK_RETRY_LIMIT}
        )
        return [row[0] for row in rows]

    def count_finished_before(self, days: int) -> tuple[int, bool]:
        """Succeeded jobs outside bundles finished more than ``days`` ago; (count, capped)."""
        rows = self._rows(
            "dashboard bulk", dq("dash_count_finished_before"), {"days": days, "cap": EXACT_COUNT_CAP}
        )
        count = int(rows[0][0])
        return count, count >= EXACT_COUNT_CAP
