"""Periodic jobs: the registered schedules (:class:`PeriodicSpec`) and the thread that
enqueues their ticks (:class:`PeriodicScheduler`).

Every worker process that has a schedule runs its scheduler, and none is a leader: a tick
is enqueued by the database transaction that moves the schedule's ``last_tick`` from the
value this process read to the new one (:meth:`WorkerDatabase.enqueue_ticks`). When
several processes race for a tick, one moves it and the others find it moved, so each
tick is enqueued exactly once, through restarts and kills (a killed transaction moves
nothing). A disabled schedule is refused by that same statement, in every process, from
the moment the change commits.

Ticks missed while no worker ran (or while every worker stalled) are handled by the
schedule's ``catch_up``: ``"latest"`` enqueues the latest of them, ``"all"`` each of them
(at most :data:`MAX_CATCH_UP_TICKS`, the latest ones), ``"none"`` only a tick that is
less than :data:`CATCH_UP_GRACE` late. Ticks are computed with the worker's clock (keep
hosts on NTP); the database only has to agree on which were enqueued.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

from jobqueue import InvalidJobError, RegistrationError
from jobqueue._constructors import check_name
from jobqueue._payload import check_json, to_json_value
from jobworker._database import ScheduleState, WorkerDatabase
from jobworker._errors import ErrorReporter
from jobworker._schedules import Schedule, check_timezone, parse_schedule

logger = logging.getLogger(__name__)

#: catch_up="all" enqueues at most this many missed ticks (the latest ones).
MAX_CATCH_UP_TICKS = 100
#: catch_up="none" still enqueues a tick this late, so that a busy worker does not skip it.
CATCH_UP_GRACE = timedelta(minutes=1)
#: How often a running scheduler declares its schedules again (the orphan check's heartbeat).
DECLARE_INTERVAL = timedelta(minutes=1)
#: How long a scheduler waits after a database error before trying again.
RETRY_AFTER_ERROR = timedelta(seconds=5)
CATCH_UP_POLICIES = ("latest", "all", "none")
#: The origin of the jobs a schedule enqueues.
PERIODIC_ORIGIN = "periodic"

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PeriodicSpec:
    """A registered schedule: enqueue a job of ``job_type`` at every tick of ``schedule``.

    ``name`` is its identity across processes (the row in ``worker.schedule``);
    ``enabled`` applies only when the schedule is first stored, later changes come
    from :func:`jobqueue.enable_periodic` / :func:`jobqueue.disable_periodic`.
    """

    name: str
    schedule: Schedule
    job_type: str
    payload: Any = None
    priority: int = 0
    max_retry_count: int = 0
    timezone: str = "UTC"
    catch_up: str = "latest"
    enabled: bool = True
    zone: ZoneInfo = field(default=ZoneInfo("UTC"), compare=False, repr=False)

    def unique_key(self, tick: datetime) -> str:
        """The unique_key of the job of ``tick``: the schedule's name and the tick's time."""
        return f"periodic:{self.name}@{tick.astimezone(UTC).isoformat()}"


class PeriodicOptions(TypedDict, total=False):
    """The optional keywords of ``register_periodic`` and ``@periodic`` (defaults and checks
    in :func:`periodic_spec`): the enqueued job's ``payload``, ``priority`` and
    ``max_retry_count``; the schedule's ``timezone``, ``catch_up`` and ``enabled``."""

    payload: Any
    priority: int
    max_retry_count: int
    timezone: str
    catch_up: str
    enabled: bool


def periodic_spec(
    name: str,
    schedule: str | Schedule,
    job_type: str,
    *,
    payload: Any = None,
    priority: int = 0,
    max_retry_count: int = 0,
    timezone: str = "UTC",
    catch_up: str = "latest",
    enabled: bool = True,
) -> PeriodicSpec:
    """A validated :class:`PeriodicSpec`; RegistrationError naming the problem otherwise."""
    try:
        check_name(name, "periodic name")
        check_name(job_type, "job type")
        value = to_json_value(payload)
        check_json(value)
    except InvalidJobError as exc:
        raise RegistrationError(str(exc)) from exc
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise RegistrationError(f"priority must be an int, got {priority!r}")
    if isinstance(max_retry_count, bool) or not isinstance(max_retry_count, int) or max_retry_count < 0:
        raise RegistrationError(f"max_retry_count must be an int >= 0, got {max_retry_count!r}")
    if catch_up not in CATCH_UP_POLICIES:
        raise RegistrationError(f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, got {catch_up!r}")
    if not isinstance(enabled, bool):
        raise RegistrationError(f"enabled must be a bool, got {enabled!r}")
    zone = check_timezone(timezone)
    return PeriodicSpec(
        name,
        parse_schedule(schedule),
        job_type,
        value,
        priority,
        max_retry_count,
        timezone,
        catch_up,
        enabled,
        zone,
    )


def ticks_to_enqueue(spec: PeriodicSpec, due: list[datetime], now: datetime) -> list[datetime]:
    """Which of the ``due`` ticks (oldest first, not empty) get a job, by ``spec.catch_up``."""
    if spec.catch_up == "all":
        return due[-MAX_CATCH_UP_TICKS:]
    latest = due[-1]
    if spec.catch_up == "none" and now - latest > CATCH_UP_GRACE:
        return []
    return [latest]


class PeriodicScheduler:
    """Enqueues the ticks of ``specs``; owns the thread ``<pool>-periodic``.

    ``clock`` (default: the system clock, UTC) is injectable for tests, which can also
    call :meth:`run_once` without starting the thread. Stopping twice, or without a
    start, is harmless.
    """

    def __init__(
        self,
        database: WorkerDatabase,
        specs: Sequence[PeriodicSpec],
        report: ErrorReporter,
        name: str,
        clock: Clock = _utc_now,
    ) -> None:
        self._database = database
        self._specs = list(specs)
        self._report = report
        self._clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._declared_at: datetime | None = None

    @property
    def specs(self) -> list[PeriodicSpec]:
        """The schedules this scheduler runs."""
        return list(self._specs)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, join_timeout: float) -> None:
        """Stop enqueueing; wait up to ``join_timeout`` for the thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(join_timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                wait = self.run_once()
            except Exception as exc:
                self._report(exc, "enqueueing periodic jobs")
                self._declared_at = None  # declare again once the database is back
                wait = RETRY_AFTER_ERROR
            self._stopping.wait(max(wait.total_seconds(), 0.0))

    def run_once(self) -> timedelta:
        """Declare the schedules when due, enqueue every due tick; return how long to wait
        until the next tick of any schedule (or the next declaration)."""
        now = self._clock()
        if self._declared_at is None or now - self._declared_at >= DECLARE_INTERVAL:
            self._database.declare_schedules(self._specs, now)
            self._declared_at = now
        states = self._database.schedule_states([s.name for s in self._specs])
        for spec in self._specs:
            state = states.get(spec.name)
            if state is not None and state.enabled:
                self._enqueue_due(spec, state, now)
        next_wake = self._declared_at + DECLARE_INTERVAL
        for spec in self._specs:
            next_wake = min(next_wake, spec.schedule.next_after(now, spec.zone))
        return next_wake - self._clock()

    def _enqueue_due(self, spec: PeriodicSpec, state: ScheduleState, now: datetime) -> None:
        after = state.last_tick if state.last_tick is not None else state.created_at
        due = spec.schedule.latest_ticks(after, now, spec.zone, MAX_CATCH_UP_TICKS)
        if not due:
            return
        ticks = ticks_to_enqueue(spec, due, now)
        ids = self._database.enqueue_ticks(spec, state.last_tick, due[-1], ticks)
        if ids is None:
            logger.debug("tick %s of %r was enqueued by another worker", due[-1], spec.name)
            return
        skipped = len(due) - len(ticks)
        logger.info(
            "periodic %r: enqueued %d job(s) for tick %s%s",
            spec.name,
            len(ids),
            due[-1].isoformat(),
            f" ({skipped} missed ticks skipped, catch_up={spec.catch_up!r})" if skipped else "",
            extra={"job_type": spec.job_type, "action": "periodic"},
        )
