"""PostgresService: the jobqueue Service and the jobworker WorkerDatabase over psycopg 3."""

from __future__ import annotations

import asyncio
import logging
import selectors
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, LiteralString, NamedTuple, TypeVar
from uuid import UUID, uuid4

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from jobqueue import (
    DatabaseError,
    InvalidJobError,
    Job,
    JobBundle,
    JobNotFoundError,
    PeriodicInfo,
    ServiceClosedError,
    ServiceListener,
    StateCounts,
    Status,
)
from jobqueue._constructors import check_start_at, check_uuid
from jobqueue._queues import DEFAULT_QUEUE, NoLimit, QueueInfo, RateLimit
from jobworker import ClaimedJobs, Outcome, OutcomeKind, PeriodicSpec, Retention, ScheduleState
from jobworker._retention import DEFAULT_PRUNE_MAX_BATCHES
from jobworker_pg import _async
from jobworker_pg import _periodic as periodic
from jobworker_pg import _pooler as pooler
from jobworker_pg import _queues as queues
from jobworker_pg import _steps as steps
from jobworker_pg import _testmodes as testmodes
from jobworker_pg import _unique as unique
from jobworker_pg._connections import psycopg_connection_of
from jobworker_pg._conninfo import mask_password, resolve_conninfo
from jobworker_pg._errors import translate_errors
from jobworker_pg._inserts import (
    checked_bundle_and_payloads,
    checked_jobs_and_payloads,
    has_unique_jobs,
    job_params,
    payloads_of,
    set_timestamps,
)
from jobworker_pg._listener import DEFAULT_PING_INTERVAL, NotificationListener
from jobworker_pg._queries import q
from jobworker_pg._rows import bundle_from_rows, job_from_row
from jobworker_pg._trace_hook import enqueue_trace

logger = logging.getLogger(__name__)


class BundleHandlerInfo(NamedTuple):
    """A declared bundle handler (worker.bundle_handler) as ``jobqueue bundle-handlers`` lists it."""

    bundle_type: str
    max_retry_count: int
    registered_at: datetime
    last_seen_at: datetime
    #: Its completion jobs not stopped yet (waiting, running or retrying).
    pending_jobs: int


T = TypeVar("T")

DEFAULT_POOL_MAX_SIZE = 10
#: get_status counts finished jobs exactly below this many rows in worker.job (planner estimate).
STATUS_EXACT_ROWS = 20_000
#: Above it, the finished counts come from a block sample of about this many rows.
STATUS_SAMPLE_ROWS = 10_000
#: The advisory lock key of pruning (retention): one process prunes at a time.
PRUNE_LOCK_KEY = 0x6A6F627072756E65  # "jobprune"
#: Batches of jobs (and of bundles) one prune_finished call deletes at most.
PRUNE_MAX_BATCHES = DEFAULT_PRUNE_MAX_BATCHES
#: How long add_listener waits for the LISTEN connection.
LISTEN_WAIT_SECONDS = 5.0
#: The pool gives up a series of reconnection attempts after this long (see __init__).
POOL_RECONNECT_TIMEOUT = 10.0
#: A checkout that waits this long makes one direct connection attempt, so that a server
#: that is down or refuses us is reported at once with its reason, not after the pool's timeout.
CHECKOUT_PROBE_SECONDS = 1.0
#: How long the direct connection attempt (and check_connection) may take.
CONNECT_TIMEOUT_SECONDS = 5
# A probe that succeeded spares the next probes for this long (a busy pool, not a down server).
_PROBE_OK_SECONDS = 5.0
#: After the server was found unreachable, a checkout waits this long for a pooled connection
#: before it connects directly (see PostgresService._checkout).
RECOVERY_CHECKOUT_SECONDS = 0.05
# The constraints a retried insert of the same ids stops at.
_PRIMARY_KEYS = frozenset({"job_pkey", "job_bundle_pkey"})
# Transient conflicts between concurrent writers that a plain retry resolves.
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
_WRITE_RETRIES = 3


def _seconds(value: timedelta | float, what: str) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJobError(f"{what} must be a timedelta or a number of seconds, got {value!r}")
    return float(value)


def _claims_params(claims: Sequence[tuple[UUID, UUID | None]]) -> dict[str, list[Any]]:
    """The parameters of heartbeat and release_claims for ``(job_id, claim_token)`` pairs,
    sorted by id so that every writer locks rows in one order."""
    ordered = sorted(claims, key=lambda c: c[0])
    return {"ids": [c[0] for c in ordered], "tokens": [c[1] for c in ordered]}


def _older_than_seconds(older_than: timedelta | float | None) -> float | None:
    seconds = None if older_than is None else _seconds(older_than, "older_than")
    if seconds is not None and seconds < 0:
        raise InvalidJobError(f"older_than must not be negative, got {older_than!r}")
    return seconds


def _check_idle_connection(conn: psycopg.Connection[Any]) -> None:
    """The pool's check before lending a connection, without a round trip in the normal case.

    An idle connection has nothing to read; if its socket is readable the server has
    said something, most often that it closed the connection (a restart, a terminated
    backend): then make a real check, which raises for a dead connection so that the
    pool replaces it.
    """
    # selectors, not select.select: that raises ValueError for descriptors >= 1024 (FD_SETSIZE),
    # which a process with many open files hands out.
    with selectors.DefaultSelector() as selector:
        selector.register(conn.fileno(), selectors.EVENT_READ)
        readable = selector.select(0)
    if readable:
        psycopg_pool.ConnectionPool.check_connection(conn)


class PostgresService:
    """The PostgreSQL job queue: a :class:`jobqueue.Service` and a
    :class:`jobworker.WorkerDatabase` over a psycopg_pool ``ConnectionPool``.

    ``conninfo`` defaults to $JOBQUEUE_DATABASE_URL, then $DATABASE_URL. Pass
    ``pool`` to share an existing pool (it is then not closed by :meth:`close`).
    ``listen_conninfo`` (default $JOBQUEUE_LISTEN_DATABASE_URL, else ``conninfo``) is where
    the LISTEN connection goes: a direct URL when ``conninfo`` is a PgBouncer in transaction
    mode; $JOBQUEUE_PREPARE_THRESHOLD=none turns off statement preparation there
    (:mod:`jobworker_pg._pooler`, docs/pgbouncer.md).
    ``prepare``: the worker's hot statements (claim, outcome save, heartbeat) are prepared
    on each connection at their first use (parsed once). It defaults to on, and to off when
    psycopg's preparation is off ($JOBQUEUE_PREPARE_THRESHOLD=none, or
    ``prepare_threshold=None`` in ``connect_kwargs``); ``prepare=False`` turns both off:
    nothing is prepared (PgBouncer in transaction pooling mode). PostgreSQL still plans the
    claim at each call (a custom plan): its generic plan, with the LIMIT unknown, joins the
    whole job table (docs/performance.md).

    Thread-safe. Every method raises ServiceClosedError after :meth:`close`,
    DatabaseError (driver error as ``__cause__``) when the database fails, and
    InvalidJobError for bad arguments before any SQL runs.
    """

    def __init__(
        self,
        conninfo: str | None = None,
        *,
        pool: psycopg_pool.ConnectionPool[Any] | None = None,
        min_size: int = 1,
        max_size: int = DEFAULT_POOL_MAX_SIZE,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        connect_kwargs: dict[str, Any] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        listen_conninfo: str | None = None,
        prepare: bool | None = None,
    ) -> None:
        connect_kwargs = pooler.with_prepare_threshold(connect_kwargs)
        if prepare is None:  # off where psycopg was told never to prepare
            prepare = not (
                "prepare_threshold" in connect_kwargs and connect_kwargs["prepare_threshold"] is None
            )
        self._prepare = bool(prepare)
        if not self._prepare:
            # Never prepare, not even a statement run often: through a transaction-pooling
            # PgBouncer the next transaction may run on another server connection.
            connect_kwargs["prepare_threshold"] = None
        if pool is not None:
            pool_conninfo = pool.conninfo if isinstance(pool.conninfo, str) else pool.conninfo()
            self._conninfo = conninfo or pool_conninfo
            self._pool = pool
            self._owns_pool = False
        else:
            self._conninfo = resolve_conninfo(conninfo)
            self._pool = psycopg_pool.ConnectionPool(
                self._conninfo,
                min_size=min_size,
                max_size=max_size,
                # Autocommit: a single statement is one round trip; several run in transaction().
                kwargs={**connect_kwargs, "autocommit": True},
                check=_check_idle_connection,
                # Give up one series of reconnection attempts (1, 2, 4 s apart) after 10 s and
                # start a new one when needed, so an outage of any length is followed by a
                # reconnect within seconds, not after a backoff grown as long as the outage.
                reconnect_timeout=POOL_RECONNECT_TIMEOUT,
                name="jobqueue",
                open=True,
            )
            self._owns_pool = True
        self._listener = NotificationListener(
            pooler.listen_conninfo(listen_conninfo, self._conninfo),
            connect_kwargs=connect_kwargs,
            ping_interval=ping_interval,
            on_error=on_error,
        )
        self._connect_kwargs = connect_kwargs
        self._probe_ok_until = 0.0
        # Set when a direct connection attempt found the server unreachable; cleared when the
        # pool lends a connection again (see _checkout).
        self._unreachable = False
        self._closed = False
        self._close_lock = threading.Lock()
        # Tokens of claims that failed on a broken connection and may have committed.
        self._unconfirmed_claims: set[UUID] = set()
        self._claims_lock = threading.Lock()
        self._queue_rules = queues.RulesCache()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PostgresService {mask_password(self._conninfo)} {state}>"

    def __enter__(self) -> PostgresService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conninfo(self) -> str:
        """The connection string (with its password; never log it unmasked)."""
        return self._conninfo

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def listener(self) -> NotificationListener:
        """The notification listener (started on first use)."""
        return self._listener

    # -- plumbing ------------------------------------------------------------------

    def _check_open(self, action: str) -> None:
        if self._closed:
            raise ServiceClosedError(f"{action}: the service is closed")

    @contextmanager
    def _connection(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection (autocommit: use ``transaction()`` for several statements),
        errors translated."""
        self._check_open(action)
        with translate_errors(action):
            conn, pooled = self._checkout()
            try:
                with conn:  # the pool's context behaviour: commit or roll back, keep it open
                    yield conn
            except pg_errors.ReadOnlySqlTransaction:
                # The session was opened while the database was read-only and keeps that
                # default: close it, so that the pool opens a fresh one once it is writable.
                conn.close()
                raise
            finally:
                if pooled:
                    self._pool.putconn(conn)
                else:
                    conn.close()

    def _checkout(self) -> tuple[psycopg.Connection[Any], bool]:
        """A connection, and whether it is the pool's.

        When none comes within CHECKOUT_PROBE_SECONDS, connect once directly: if that fails,
        the server's reason is raised now (wrong password, unknown database, server down)
        instead of a PoolTimeout after the pool's timeout. From then until the pool lends a
        connection again, a checkout that finds none ready uses a connection of its own
        (closed after the call): the pool reconnects on its own backoff, seconds apart, and
        work must resume as soon as the server answers, not at the pool's next attempt.
        """
        timeout = self._pool.timeout
        if self._unreachable:
            try:
                conn = self._pool.getconn(timeout=RECOVERY_CHECKOUT_SECONDS)
            except psycopg_pool.PoolTimeout:
                return self._connect_directly(), False
            self._unreachable = False
            return conn, True
        try:
            return self._pool.getconn(timeout=min(CHECKOUT_PROBE_SECONDS, timeout)), True
        except psycopg_pool.PoolTimeout:
            if timeout <= CHECKOUT_PROBE_SECONDS:
                raise
        if time.monotonic() >= self._probe_ok_until:
            self._connect_directly().close()
            self._probe_ok_until = time.monotonic() + _PROBE_OK_SECONDS
        return self._pool.getconn(timeout=timeout - CHECKOUT_PROBE_SECONDS), True

    def _connect_directly(self) -> psycopg.Connection[Any]:
        """A connection outside the pool, with the pool's settings; an OperationalError with
        the server's message marks the server unreachable."""
        kwargs = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **self._connect_kwargs, "autocommit": True}
        try:
            conn = psycopg.connect(self._conninfo, **kwargs)
        except psycopg.OperationalError:
            self._unreachable = True
            raise
        return conn

    def check_connection(self) -> None:
        """Connect to the database once, directly; DatabaseError with the server's reason
        (authentication failed, database does not exist, connection refused) if that fails.
        :func:`jobworker_pg.init_job_queue` calls it so that a wrong URL fails at once."""
        self._check_open("check_connection")
        with translate_errors(f"connecting to {mask_password(self._conninfo)}"):
            self._connect_directly().close()

    def _write(self, action: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``fn`` in its own transaction, retrying deadlocks and serialization failures."""
        for attempt in range(_WRITE_RETRIES):
            try:
                with self._connection(action) as conn:
                    return fn(conn)
            except Exception as exc:
                if attempt + 1 < _WRITE_RETRIES and isinstance(exc.__cause__, _RETRYABLE):
                    logger.info("%s: %s, retrying", action, type(exc.__cause__).__name__)
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- adding jobs -----------------------------------------------------------------

    def add_job(self, job: Job, *, conn: Any = None) -> Job:
        """Store one job (see :func:`jobqueue.add`). Returns the job with its timestamps.

        Under a test mode (:func:`jobworker_pg.synchronous_jobs`, :func:`jobworker_pg.ignore_jobs`)
        the job is run inline or dropped instead, after the same validation.
        """
        params = job_params(job)
        if testmodes.active() and not testmodes.handle_jobs([job]):
            return job
        if job.unique_key is not None:  # (no enqueue span: the unique path stores no trace context yet)
            return self._add_unique("add_job", unique.plan([job]), [params["payload"]], conn)[0]
        with enqueue_trace("add_job", (job,)) as trace_context:
            params["trace_context"] = trace_context
            if conn is not None:
                return self._run("add_job", steps.insert_job(job, params), conn)
            self._retrying_lost_connection(
                "add_job", lambda: self._run("add_job", steps.insert_job(job, params), None), [job], None
            )
        return job

    def add_jobs(self, jobs: Sequence[Job], *, conn: Any = None) -> list[Job]:
        """Store many jobs in one statement, all or none (see :func:`jobqueue.add_many`).

        Jobs with a ``unique_key`` that is taken (by a stored job, or by an earlier job of
        the same list) are not stored: the list returned holds the job that has the key
        instead, with ``deduplicated=True`` (or DuplicateJobError, and nothing stored, for
        one built with ``on_conflict="raise"``). Under a test mode each job is run inline,
        dropped or stored as that mode says.
        """
        jobs, payloads = checked_jobs_and_payloads(jobs)
        to_store = jobs
        if testmodes.active():
            to_store = testmodes.handle_jobs(jobs)
            payloads = payloads_of(to_store, jobs, payloads)
        if to_store and has_unique_jobs(to_store):
            stored = self._add_unique("add_jobs", unique.plan(to_store), payloads, conn)
            by_job = {id(j): s for j, s in zip(to_store, stored, strict=True)}
            return [by_job.get(id(j), j) for j in jobs]
        if to_store:
            self._insert_jobs("add_jobs", to_store, payloads, conn)
        return jobs

    def _add_unique(
        self,
        action: str,
        plan: unique.UniquePlan,
        payloads: list[str],
        conn: Any,
        bundle: JobBundle | None = None,
    ) -> list[Job]:
        """Store jobs of which some have a unique_key (see :mod:`jobworker_pg._unique`); a
        standalone add is tried once more when its connection fails, as other inserts are
        (a first try that committed is then found holding its own keys)."""
        atomic = plan.atomic or bundle is not None
        if conn is not None:
            return self._run(action, unique.insert_unique_jobs(plan, payloads, bundle), conn, atomic=atomic)
        results: list[list[Job]] = []
        self._retrying_lost_connection(
            action,
            lambda: results.append(
                self._run(action, unique.insert_unique_jobs(plan, payloads, bundle), None, atomic=atomic)
            ),
            [plan.jobs[i] for i in plan.kept],
            bundle,
        )
        return results[-1] if results else plan.jobs

    def _insert_jobs(
        self, action: str, jobs: list[Job], payloads: list[str], conn: Any, bundle: JobBundle | None = None
    ) -> None:
        """Store checked jobs (``payloads``: their JSON text, made by the check), all or none."""
        self._check_open(action)
        with enqueue_trace(action, jobs) as trace_context:
            self._store_jobs(action, jobs, payloads, conn, bundle, trace_context)

    def _store_jobs(
        self,
        action: str,
        jobs: list[Job],
        payloads: list[str],
        conn: Any,
        bundle: JobBundle | None,
        trace_context: Any,
    ) -> None:
        if conn is not None:
            raw = psycopg_connection_of(conn)
            atomic = steps.insert_jobs_atomically(jobs, bundle, raw.autocommit)
            insert_steps = steps.insert_jobs(jobs, payloads, bundle, trace_context)
            steps.run_steps(raw, action, insert_steps, atomic=atomic)
            return

        def insert() -> None:
            with self._connection(action) as pooled:
                atomic = steps.insert_jobs_atomically(jobs, bundle, pooled.autocommit)
                insert_steps = steps.insert_jobs(jobs, payloads, bundle, trace_context)
                steps.run_steps(pooled, action, insert_steps, atomic=atomic)

        self._retrying_lost_connection(action, insert, jobs, bundle)

    def _retrying_lost_connection(
        self, action: str, insert: Callable[[], object], jobs: list[Job], bundle: JobBundle | None
    ) -> None:
        """Run a standalone insert (its own transaction); when the connection fails under it,
        run it once more. That cannot store a job twice: the ids are the client's, so if the
        first try committed before its reply was lost, the retry stops at the primary key,
        and finding the jobs stored (same id, type and origin) is the success it reports."""
        try:
            insert()
            return
        except DatabaseError as exc:
            if not isinstance(exc.__cause__, psycopg.OperationalError) or self._closed:
                raise
            logger.warning("%s: the connection failed (%s); trying once more", action, exc.__cause__)
        try:
            insert()
        except DatabaseError as exc:
            cause = exc.__cause__
            if not (
                isinstance(cause, pg_errors.UniqueViolation)
                and cause.diag.constraint_name in _PRIMARY_KEYS
                and self._stored_already(jobs, bundle)
            ):
                raise
            logger.info("%s: the first try had committed before its connection failed", action)

    def _stored_already(self, jobs: list[Job], bundle: JobBundle | None) -> bool:
        """Whether these jobs (all or none were stored) are in the database; if so, take their
        timestamps from it."""
        try:
            if bundle is not None:
                stored_bundle = self.get_job_bundle(bundle.id)
                if (stored_bundle.type, stored_bundle.origin) != (bundle.type, bundle.origin):
                    return False
                bundle.created_at, bundle.updated_at = stored_bundle.created_at, stored_bundle.updated_at
            stored = self.get_job(jobs[0].id)
        except JobNotFoundError:
            return False
        if (stored.type, stored.origin, stored.bundle_id) != (
            jobs[0].type,
            jobs[0].origin,
            jobs[0].bundle_id,
        ):
            return False
        assert stored.created_at is not None
        set_timestamps(jobs, stored.created_at, stored.updated_at)
        return True

    def _run(self, action: str, operation: steps.Steps[T], conn: Any, *, atomic: bool = False) -> T:
        """Run one operation on the caller's ``conn`` (inside its transaction), else on a
        pooled connection; with ``atomic``, all or none (see :func:`steps.run_steps`)."""
        self._check_open(action)
        if conn is not None:
            return steps.run_steps(psycopg_connection_of(conn), action, operation, atomic=atomic)
        with self._connection(action) as pooled:
            return steps.run_steps(pooled, action, operation, atomic=atomic)

    def add_job_bundle(self, bundle: JobBundle, *, conn: Any = None) -> JobBundle:
        """Store a bundle and its jobs atomically (see :func:`jobqueue.add_bundle`).

        Under :func:`jobworker_pg.synchronous_jobs` its jobs run inline and its listeners
        fire; under :func:`jobworker_pg.ignore_job_bundles` it is dropped.
        """
        jobs, payloads = checked_bundle_and_payloads(bundle)
        if testmodes.active() and testmodes.handle_bundle(bundle):
            return bundle
        if has_unique_jobs(jobs):  # whole or not at all: a key taken is a DuplicateJobError
            self._add_unique("add_job_bundle", unique.plan(jobs, bundle), payloads, conn, bundle)
        else:
            self._insert_jobs("add_job_bundle", jobs, payloads, conn, bundle)
        return bundle

    # -- reading ---------------------------------------------------------------------

    def get_job(self, job_id: UUID) -> Job:
        """The job with that id; JobNotFoundError if none."""
        return self._run("get_job", steps.get_job(check_uuid(job_id)), None)

    def get_jobs(self, job_ids: Sequence[UUID]) -> list[Job]:
        """The jobs with these ids that exist, in one read (order not kept)."""
        ids = [check_uuid(i) for i in job_ids]
        return self._jobs("get_jobs", q("get_jobs"), {"ids": ids}) if ids else []

    def get_trace_context(self, job_id: UUID) -> dict[str, str] | None:
        """The W3C trace context stored with a job when it was enqueued under tracing
        (:mod:`jobworker_pg.tracing`), or None; JobNotFoundError for an unknown job."""
        job_id = check_uuid(job_id)
        with self._connection("get_trace_context") as conn:
            row = conn.execute(q("get_trace_context"), {"id": job_id}).fetchone()
        if row is None:
            raise JobNotFoundError("job", job_id)
        value: dict[str, str] | None = row[0]
        return value

    def get_job_bundle(self, bundle_id: UUID) -> JobBundle:
        """The bundle with that id and its jobs; JobNotFoundError if none."""
        bundle_id = check_uuid(bundle_id, "bundle id")
        with self._connection("get_job_bundle") as conn:
            rows = conn.execute(q("get_bundle"), {"id": bundle_id}).fetchall()
        if not rows:
            raise JobNotFoundError("job bundle", bundle_id)
        return bundle_from_rows(rows)

    def _jobs(self, action: str, query: LiteralString, params: dict[str, Any] | None = None) -> list[Job]:
        with self._connection(action) as conn:
            return [job_from_row(r) for r in conn.execute(query, params)]

    def get_all_jobs_to_do(self) -> list[Job]:
        """Every job not stopped, in claim order."""
        return self._jobs("get_all_jobs_to_do", q("jobs_to_do"))

    def get_all_jobs_started_before(self, since: datetime) -> list[Job]:
        """Running jobs started before ``since`` (timezone-aware)."""
        if since is None:
            raise InvalidJobError("since must be a timezone-aware datetime, got None")
        check_start_at(since)
        return self._jobs("get_all_jobs_started_before", q("jobs_started_before"), {"since": since})

    def get_all_jobs_with_errors(self) -> list[Job]:
        """Jobs whose last attempt failed (stopped or retrying), not counting cancelled ones."""
        return self._jobs("get_all_jobs_with_errors", q("jobs_with_errors"))

    def get_status(self) -> Status:
        """Counts of jobs by state and type, and of bundles.

        Pending, scheduled, running and retrying are exact, counted from the partial indexes
        of unfinished jobs. Succeeded, failed and cancelled are exact while the table holds
        fewer than STATUS_EXACT_ROWS rows; above, they are estimates from a block sample of
        about STATUS_SAMPLE_ROWS rows, and ``Status.estimated`` is True. So the call costs
        about the same with a million finished jobs as with none.
        """
        with self._connection("get_status") as conn, conn.transaction():
            unfinished = conn.execute(q("status_unfinished")).fetchall()
            row = conn.execute(q("job_rows_estimate")).fetchone()
            rows_estimate = float(row[0]) if row is not None else -1.0
            estimated = rows_estimate >= STATUS_EXACT_ROWS
            if estimated:
                percent = min(100.0, 100.0 * STATUS_SAMPLE_ROWS / rows_estimate)
                finished = conn.execute(q("status_finished_sampled"), {"percent": percent}).fetchall()
            else:
                finished = conn.execute(q("status_finished")).fetchall()
            bundles = conn.execute(q("status_bundles")).fetchone()
        counts: dict[str, dict[str, int]] = {}
        for job_type, pending, scheduled, running, retrying in unfinished:
            counts.setdefault(job_type, {}).update(
                pending=pending, scheduled=scheduled, running=running, retrying=retrying
            )
        for job_type, succeeded, failed, cancelled in finished:
            counts.setdefault(job_type, {}).update(succeeded=succeeded, failed=failed, cancelled=cancelled)
        by_type = {t: StateCounts(**c) for t, c in sorted(counts.items())}
        totals = {f: sum(getattr(c, f) for c in by_type.values()) for f in StateCounts.model_fields}
        assert bundles is not None
        return Status(
            **totals,
            by_type=by_type,
            num_bundles=bundles[0],
            num_bundles_stopped=bundles[1],
            estimated=estimated,
        )

    # -- changing jobs -----------------------------------------------------------------

    def delete_job(self, job_id: UUID) -> None:
        """Delete a job; JobNotFoundError if none. An unstopped bundle job counts as stopped."""
        job_id = check_uuid(job_id)
        row = self._write("delete_job", lambda c: c.execute(q("delete_job"), {"id": job_id}).fetchone())
        if row is None:
            raise JobNotFoundError("job", job_id)

    def delete_job_bundle(self, bundle_id: UUID) -> None:
        """Delete a bundle and its jobs; JobNotFoundError if none."""
        bundle_id = check_uuid(bundle_id, "bundle id")
        row = self._write(
            "delete_job_bundle", lambda c: c.execute(q("delete_bundle"), {"id": bundle_id}).fetchone()
        )
        if row is None:
            raise JobNotFoundError("job bundle", bundle_id)

    def reset_job(self, job_id: UUID) -> Job:
        """Make a job run again from scratch (see :meth:`jobqueue.Service.reset_job`)."""
        return self.reset_jobs([job_id])[0]

    def reset_jobs(self, job_ids: Iterable[UUID]) -> list[Job]:
        """Reset several jobs in one transaction; JobNotFoundError (nothing reset) if any is unknown."""
        if isinstance(job_ids, str | UUID) or not isinstance(job_ids, Iterable):
            raise InvalidJobError(f"reset_jobs takes a list of job ids, got {type(job_ids).__name__}")
        ids = [check_uuid(i) for i in job_ids]
        if not ids:
            return []

        def reset(conn: psycopg.Connection[Any]) -> list[Job]:
            with conn.transaction():  # all or none: an unknown id rolls the others back
                jobs = {j.id: j for j in map(job_from_row, conn.execute(q("reset_jobs"), {"ids": ids}))}
                missing = [i for i in ids if i not in jobs]
                if missing:
                    raise JobNotFoundError("job", missing[0])
            return [jobs[i] for i in ids]

        return self._write("reset_jobs", reset)

    def cancel_job(self, job_id: UUID) -> Job:
        """Cancel a job that is not running (see :meth:`jobqueue.Service.cancel_job`)."""
        job_id = check_uuid(job_id)
        row = self._write("cancel_job", lambda c: c.execute(q("cancel_job"), {"id": job_id}).fetchone())
        if row is not None:
            return job_from_row(row)
        job = self.get_job(job_id)  # raises JobNotFoundError
        if job.stopped:
            return job
        raise InvalidJobError(f"job {job_id} is running; only jobs that have not started can be cancelled")

    def delete_finished_jobs(self, older_than: timedelta | float | None = None) -> int:
        """Delete succeeded jobs outside bundles, stopped more than ``older_than`` ago if given."""
        seconds = _older_than_seconds(older_than)
        return self._write(
            "delete_finished_jobs",
            lambda c: c.execute(q("delete_finished_jobs"), {"older_than": seconds}).rowcount,
        )

    def delete_finished_bundles(self, older_than: timedelta | float | None = None) -> int:
        """Delete bundles whose jobs all succeeded (with those jobs) and whose durable
        completion handler has run, completed more than ``older_than`` ago if given; returns
        how many bundles. Bundles with a failed job stay for inspection."""
        seconds = _older_than_seconds(older_than)
        return self._write(
            "delete_finished_bundles",
            lambda c: c.execute(q("delete_finished_bundles"), {"older_than": seconds}).rowcount,
        )

    # -- notifications -----------------------------------------------------------------

    def add_listener(self, listener: ServiceListener) -> None:
        """Deliver stop notifications to ``listener`` on the listener's dispatch thread.

        Returns once the LISTEN is in place, so every job that stops afterwards is
        reported; if the database cannot be reached within LISTEN_WAIT_SECONDS it returns
        anyway and events flow from when the listener connects.
        """
        self._check_open("add_listener")
        if not isinstance(listener, ServiceListener):
            raise InvalidJobError(
                f"listener must have on_job_stopped and on_job_bundle_stopped, got {type(listener).__name__}"
            )
        self._listener.add_listener(listener)
        self._listener.wait_connected(LISTEN_WAIT_SECONDS)

    def set_wakeup_callback(self, callback: Callable[[str | None], None] | None) -> None:
        """WorkerDatabase: call ``callback(job_type)`` on job_available notifications."""
        self._check_open("set_wakeup_callback")
        self._listener.set_wakeup(callback)

    # -- the worker's side ---------------------------------------------------------------

    def claim_jobs(self, job_types: Sequence[str], limit: int, *, queue: str = DEFAULT_QUEUE) -> list[Job]:
        """WorkerDatabase: claim up to ``limit`` due jobs of ``job_types`` from ``queue``
        (claim committed), within the queue's rules (see :mod:`jobworker_pg._queues`).

        Returns :class:`jobworker.ClaimedJobs`, whose ``retry_in`` says when to try again
        if the queue's rules held the claim back. The claim token comes from here, so that
        a claim whose reply was lost (the connection broke after the commit, as in a server
        crash) is not lost with it: the next call first takes back the jobs that still carry
        such a token, instead of leaving them to the reaper with an attempt spent and never run.
        """
        if limit <= 0 or not job_types:
            return ClaimedJobs()
        token = uuid4()
        with self._claims_lock:
            unconfirmed = list(self._unconfirmed_claims)
        retry_in = None
        try:
            with self._connection("claim_jobs") as conn:
                recovered = []
                if unconfirmed:
                    rows = conn.execute(q("claimed_with_tokens"), {"tokens": unconfirmed}).fetchall()
                    recovered = [job_from_row(r) for r in rows]
                    if len(recovered) > limit:  # never hand out more than asked for
                        extra, recovered = recovered[limit:], recovered[:limit]
                        conn.execute(
                            q("release_claims"), _claims_params([(j.id, j.claim_token) for j in extra])
                        )
                want = max(limit - len(recovered), 0)
                jobs: list[Job] = []
                if want:
                    rules = self._queue_rules
                    if rules.stale():
                        rules.refresh(conn)
                    plain = (
                        None
                        if rules.has_rules(queue)
                        else queues.claim_plain(conn, queue, job_types, want, token, prepare=self._prepare)
                    )
                    if plain is None:  # rules known, or found by claim_jobs' own check
                        rules.add(queue)
                        claim = queues.claim_under_rules(
                            conn, queue, job_types, want, token, prepare=self._prepare
                        )
                        jobs, retry_in = claim.jobs, claim.retry_in
                    else:
                        jobs = plain
            with self._claims_lock:
                self._unconfirmed_claims.difference_update(unconfirmed)
            if recovered:
                logger.info("took back %d jobs of a claim whose reply was lost", len(recovered))
        except DatabaseError as exc:
            if isinstance(exc.__cause__, psycopg.OperationalError):  # it may have committed
                with self._claims_lock:
                    self._unconfirmed_claims.add(token)
            raise
        # UPDATE ... RETURNING does not keep the subquery's order: restore it.
        jobs.sort(key=lambda j: (-j.priority, j.created_at, j.id))
        return ClaimedJobs(recovered + jobs, retry_in)

    # -- queues --------------------------------------------------------------------------

    def configure_queue(
        self,
        name: str,
        *,
        concurrency: int | NoLimit | None = None,
        per_key_concurrency: int | NoLimit | None = None,
        rate_limit: RateLimit | NoLimit | None = None,
        paused: bool | None = None,
    ) -> QueueInfo:
        """Create or change the rules of queue ``name`` (see :func:`jobqueue.configure_queue`)."""
        params = queues.configure_params(name, concurrency, per_key_concurrency, rate_limit, paused)
        info = self._write("configure_queue", lambda c: queues.configure_queue(c, params))
        self._queue_rules.forget()
        return info

    def list_queues(self) -> list[QueueInfo]:
        """Every queue with rules or unstopped jobs (see :func:`jobqueue.list_queues`)."""
        with self._connection("list_queues") as conn:
            return queues.list_queues(conn)

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> set[UUID]:
        """WorkerDatabase: write many outcomes in one transaction; returns the ids applied."""
        if not outcomes:
            return set()
        ordered = sorted(outcomes, key=lambda o: o.job_id)  # one lock order for every writer
        params = {
            "ids": [o.job_id for o in ordered],
            "tokens": [o.claim_token for o in ordered],
            "kinds": [o.kind.value for o in ordered],
            "results": [o.result_json for o in ordered],
            "error_msgs": [o.error_msg for o in ordered],
            "error_types": [o.error_type for o in ordered],
            "error_datas": [o.error_data_json for o in ordered],
            "retry_delays": [
                o.retry_delay.total_seconds() if o.retry_delay is not None else 0.0 for o in ordered
            ],
            # One statement either way; it locks the bundles first when it stops a bundle's job.
            "lock_bundles": any(
                o.bundle_id is not None and o.kind in (OutcomeKind.SUCCEEDED, OutcomeKind.FAILED)
                for o in ordered
            ),
        }

        def save(conn: psycopg.Connection[Any]) -> set[UUID]:
            return {row[0] for row in conn.execute(q("save_outcomes"), params, prepare=self._prepare)}

        return self._write("save_outcomes", save)

    def heartbeat(self, claims: Sequence[tuple[UUID, UUID]]) -> set[UUID]:
        """WorkerDatabase: mark claims alive in one statement; returns the ids still current."""
        # Sent even with no claims: it is also the worker's periodic check that the database answers.
        return self._write_claims("heartbeat", q("heartbeat"), claims)

    def release_claims(self, claims: Sequence[tuple[UUID, UUID]]) -> set[UUID]:
        """WorkerDatabase: give back claimed, never started jobs (attempt uncounted)."""
        return self._write_claims("release_claims", q("release_claims"), claims) if claims else set()

    def _write_claims(
        self, action: str, query: LiteralString, claims: Sequence[tuple[UUID, UUID]]
    ) -> set[UUID]:
        """Run ``query`` (heartbeat, release_claims) for ``(job_id, claim_token)`` pairs, sorted
        by id so that every writer locks rows in one order; returns the ids it applied to."""
        params = _claims_params(claims)
        return self._write(
            action, lambda c: {row[0] for row in c.execute(query, params, prepare=self._prepare)}
        )

    def reap_dead_jobs(self, dead_for: timedelta | float) -> int:
        """WorkerDatabase: requeue or fail running jobs whose heartbeat is older than ``dead_for``."""
        seconds = _seconds(dead_for, "dead_for")
        if seconds <= 0:
            raise InvalidJobError(f"dead_for must be positive, got {dead_for!r}")
        rows = self._write(
            "reap_dead_jobs", lambda c: c.execute(q("reap_dead_jobs"), {"dead_for": seconds}).fetchall()
        )
        for job_id, job_type, failed in rows:
            logger.warning(
                "job %s of type %s lost its worker: %s",
                job_id,
                job_type,
                "failed, no attempt left" if failed else "requeued",
                extra={"job_id": str(job_id), "job_type": job_type, "action": "reap"},
            )
        return len(rows)

    def prune_finished(self, retention: Retention) -> int | None:
        """WorkerDatabase: delete finished jobs and bundles past their retention.

        One process at a time (a session advisory lock; None at once when another process
        holds it). Deletes in batches of ``retention.batch_size``, each statement its own
        short transaction that skips rows other transactions hold, at most
        PRUNE_MAX_BATCHES batches of jobs and of bundles per call. Returns the rows deleted.
        """
        if not retention.prunes_anything:
            return 0
        ages = {
            name: None if age is None else age.total_seconds()
            for name, age in (
                ("succeeded", retention.succeeded),
                ("failed", retention.failed),
                ("cancelled", retention.cancelled),
                ("bundles", retention.bundles),
            )
        }
        job_ages = [a for n, a in ages.items() if n != "bundles" and a is not None]
        params = {**ages, "min_age": min(job_ages, default=None), "batch": retention.batch_size}
        with self._connection("prune_finished") as conn:
            row = conn.execute(q("prune_lock"), {"key": PRUNE_LOCK_KEY}).fetchone()
            if row is None or not row[0]:
                return None
            try:
                deleted = 0
                for query, wanted in (
                    (q("prune_jobs"), bool(job_ages)),
                    (q("prune_bundles"), ages["bundles"] is not None),
                ):
                    for _ in range(PRUNE_MAX_BATCHES if wanted else 0):
                        count = conn.execute(query, params).rowcount
                        deleted += count
                        if count < retention.batch_size:
                            break
            finally:
                conn.execute(q("prune_unlock"), {"key": PRUNE_LOCK_KEY})
        return deleted

    def seconds_until_next_job(self, job_types: Sequence[str]) -> float | None:
        """WorkerDatabase: seconds until the next scheduled job of ``job_types`` is due."""
        if not job_types:
            return None
        with self._connection("seconds_until_next_job") as conn:
            row = conn.execute(q("seconds_until_next_job"), {"types": list(job_types)}).fetchone()
        return None if row is None or row[0] is None else max(0.0, float(row[0]))

    def declare_bundle_handlers(self, handlers: Mapping[str, int]) -> None:
        """WorkerDatabase: record bundle types that have a durable completion handler, with
        the retries of their completion jobs; refreshes ``last_seen_at``."""
        if not handlers:
            return
        params = {"bundle_types": list(handlers), "max_retry_counts": list(handlers.values())}
        self._write("declare_bundle_handlers", lambda c: c.execute(q("declare_bundle_handlers"), params))

    def list_bundle_handlers(self) -> list[BundleHandlerInfo]:
        """The declared bundle handlers (``jobqueue bundle-handlers``), by bundle type."""
        with self._connection("list_bundle_handlers") as conn:
            rows = conn.execute(q("list_bundle_handlers")).fetchall()
        return [BundleHandlerInfo(*row) for row in rows]

    def remove_bundle_handler(self, bundle_type: str) -> bool:
        """Forget a bundle handler declaration: bundles of ``bundle_type`` stop enqueuing
        completion jobs (until a worker that registers it starts again). False if unknown."""
        row = self._write(
            "remove_bundle_handler",
            lambda c: c.execute(q("remove_bundle_handler"), {"bundle_type": bundle_type}).fetchone(),
        )
        return row is not None

    # -- periodic jobs: the worker's side (see jobworker._periodic) ----------------------

    def declare_schedules(self, specs: Sequence[PeriodicSpec], now: datetime) -> None:
        """WorkerDatabase: store or refresh the schedules this worker runs."""
        periodic.declare_schedules(self, specs, now)

    def schedule_states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        """WorkerDatabase: the stored state of the named schedules."""
        return periodic.schedule_states(self, names)

    def enqueue_ticks(
        self,
        spec: PeriodicSpec,
        expected_last_tick: datetime | None,
        last_tick: datetime,
        ticks: Sequence[datetime],
    ) -> list[UUID] | None:
        """WorkerDatabase: move the schedule's last tick and enqueue its ticks, or nothing."""
        return periodic.enqueue_ticks(self, spec, expected_last_tick, last_tick, ticks)

    # -- periodic jobs: management (jobqueue.PeriodicAdmin) --------------------------------

    def list_periodic(self) -> list[PeriodicInfo]:
        """Every stored schedule (see :func:`jobqueue.list_periodic`)."""
        return periodic.list_periodic(self)

    def get_periodic(self, name: str) -> PeriodicInfo:
        """One stored schedule; JobNotFoundError if none (see :func:`jobqueue.get_periodic`)."""
        return periodic.get_periodic(self, name)

    def enable_periodic(self, name: str) -> PeriodicInfo:
        """Enable a schedule in every worker (see :func:`jobqueue.enable_periodic`)."""
        return periodic.set_enabled(self, name, True)

    def disable_periodic(self, name: str) -> PeriodicInfo:
        """Disable a schedule in every worker (see :func:`jobqueue.disable_periodic`)."""
        return periodic.set_enabled(self, name, False)

    def run_periodic_now(self, name: str) -> Job:
        """Enqueue one job of a schedule now (see :func:`jobqueue.run_periodic_now`)."""
        return periodic.run_periodic_now(self, name)

    def delete_periodic(self, name: str) -> None:
        """Forget a stored schedule (see :func:`jobqueue.delete_periodic`)."""
        periodic.delete_periodic(self, name)

    # -- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the listener and close the pool (if this service opened it). Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._listener.stop()
        if self._owns_pool:
            self._pool.close()

    # -- asyncio -------------------------------------------------------------------------
    # Without conn= the sync method runs on a thread: see jobworker_pg._async for why.

    async def add_job_async(self, job: Job, *, conn: Any = None) -> Job:
        """Awaitable :meth:`add_job` (see :func:`jobqueue.add_async`).

        ``conn`` is a psycopg ``AsyncConnection`` or a SQLAlchemy ``AsyncConnection`` /
        ``AsyncSession`` (``postgresql+psycopg``): the insert joins its open transaction,
        so workers see the job only after it commits, never if it rolls back. Without
        ``conn`` the job is stored on its own, from a thread, so the event loop never
        blocks. Raises InvalidJobError before any SQL, and honours the test modes.
        """
        if conn is None:
            return await asyncio.to_thread(self.add_job, job)
        params = job_params(job)
        if not await _async.apply_modes([job]):
            return job
        raw = await _async.async_connection_of(conn)
        self._check_open("add_job_async")
        if job.unique_key is not None:
            operation = unique.insert_unique_jobs(unique.plan([job]), [params["payload"]])
            return (await steps.run_steps_async(raw, "add_job_async", operation))[0]
        with enqueue_trace("add_job_async", (job,)) as trace_context:
            params["trace_context"] = trace_context
            return await steps.run_steps_async(raw, "add_job_async", steps.insert_job(job, params))

    async def add_jobs_async(self, jobs: Sequence[Job], *, conn: Any = None) -> list[Job]:
        """Awaitable :meth:`add_jobs`: many jobs in one statement, all or none;
        ``conn`` as for :meth:`add_job_async`."""
        if conn is None:
            return await asyncio.to_thread(self.add_jobs, jobs)
        checked, payloads = checked_jobs_and_payloads(jobs)
        to_store, payloads = await _async.apply_modes_with_payloads(checked, payloads)
        if to_store and has_unique_jobs(to_store):
            plan = unique.plan(to_store)
            raw = await _async.async_connection_of(conn)
            self._check_open("add_jobs_async")
            operation = unique.insert_unique_jobs(plan, payloads)
            stored = await steps.run_steps_async(raw, "add_jobs_async", operation, atomic=plan.atomic)
            by_job = {id(j): s for j, s in zip(to_store, stored, strict=True)}
            return [by_job.get(id(j), j) for j in checked]
        if to_store:
            await self._insert_jobs_async("add_jobs_async", to_store, payloads, conn)
        return checked

    async def add_job_bundle_async(self, bundle: JobBundle, *, conn: Any = None) -> JobBundle:
        """Awaitable :meth:`add_job_bundle`: a bundle and its jobs atomically;
        ``conn`` as for :meth:`add_job_async`."""
        if conn is None:
            return await asyncio.to_thread(self.add_job_bundle, bundle)
        jobs, payloads = checked_bundle_and_payloads(bundle)
        if testmodes.active() and await asyncio.to_thread(testmodes.handle_bundle, bundle):
            return bundle
        await self._insert_jobs_async("add_job_bundle_async", jobs, payloads, conn, bundle)
        return bundle

    async def _insert_jobs_async(
        self, action: str, jobs: list[Job], payloads: list[str], conn: Any, bundle: JobBundle | None = None
    ) -> None:
        raw = await _async.async_connection_of(conn)
        self._check_open(action)
        # Always atomic: on the caller's connection a savepoint, as in the sync path.
        if bundle is not None and has_unique_jobs(jobs):
            operation = unique.insert_unique_jobs(unique.plan(jobs, bundle), payloads, bundle)
            await steps.run_steps_async(raw, action, operation, atomic=True)
            return
        with enqueue_trace(action, jobs) as trace_context:
            insert = steps.insert_jobs(jobs, payloads, bundle, trace_context)
            await steps.run_steps_async(raw, action, insert, atomic=True)

    async def get_job_async(self, job_id: UUID, *, conn: Any = None) -> Job:
        """Awaitable :meth:`get_job`; JobNotFoundError if none. With ``conn`` (as for
        :meth:`add_job_async`) it reads inside that transaction, so it also sees the
        transaction's own uncommitted jobs."""
        if conn is None:
            return await asyncio.to_thread(self.get_job, job_id)
        job_id = check_uuid(job_id)
        raw = await _async.async_connection_of(conn)
        self._check_open("get_job_async")
        return await steps.run_steps_async(raw, "get_job_async", steps.get_job(job_id))

    # -- for tests -------------------------------------------------------------------------

    def get_all_jobs(self) -> list[Job]:
        """Every job, stopped or not, oldest first (meant for tests and small queues)."""
        return self._jobs("get_all_jobs", q("all_jobs"))

    def make_jobs_due(self, job_types: Sequence[str]) -> int:
        """For tests: jobs of ``job_types`` waiting for a future ``start_at`` (scheduled, or
        waiting for a retry) become due now. Returns how many."""
        if isinstance(job_types, str):
            raise InvalidJobError("make_jobs_due takes a list of job types, not a str")
        if not job_types:
            return 0
        return self._write(
            "make_jobs_due", lambda c: c.execute(q("make_jobs_due"), {"types": list(job_types)}).rowcount
        )
