"""The PostgreSQL side of periodic jobs: the worker's declarations and tick enqueueing
(:class:`jobworker.WorkerDatabase`), and the management calls of :class:`jobqueue.PeriodicAdmin`.

The bodies of those PostgresService methods; SQL in queries.sql (``*_schedule*``,
``enqueue_ticks``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from jobqueue import ORPHANED_AFTER, Job, JobNotFoundError, JobQueueError, PeriodicInfo
from jobqueue._constructors import check_name
from jobqueue._ids import new_id
from jobworker import PERIODIC_ORIGIN, PeriodicSpec, ScheduleState
from jobworker._schedules import check_timezone, parse_schedule
from jobworker_pg._queries import q
from jobworker_pg._rows import job_from_row

if TYPE_CHECKING:
    from jobworker_pg._service import PostgresService


def declare_schedules(service: PostgresService, specs: Sequence[PeriodicSpec], now: datetime) -> None:
    """See :meth:`jobworker.WorkerDatabase.declare_schedules`."""
    if not specs:
        return
    params = {
        "now": now,
        "names": [s.name for s in specs],
        "schedules": [s.schedule.expression for s in specs],
        "timezones": [s.timezone for s in specs],
        "job_types": [s.job_type for s in specs],
        "payloads": [json.dumps(s.payload) for s in specs],
        "priorities": [s.priority for s in specs],
        "max_retry_counts": [s.max_retry_count for s in specs],
        "catch_ups": [s.catch_up for s in specs],
        "enableds": [s.enabled for s in specs],
    }
    service._write("declare_schedules", lambda c: c.execute(q("declare_schedules"), params))


def schedule_states(service: PostgresService, names: Sequence[str]) -> dict[str, ScheduleState]:
    """See :meth:`jobworker.WorkerDatabase.schedule_states`."""
    with service._connection("schedule_states") as conn:
        rows = conn.execute(q("schedule_states"), {"names": list(names)}).fetchall()
    return {
        name: ScheduleState(enabled, last_tick, created_at) for name, enabled, last_tick, created_at in rows
    }


def enqueue_ticks(
    service: PostgresService,
    spec: PeriodicSpec,
    expected_last_tick: datetime | None,
    last_tick: datetime,
    ticks: Sequence[datetime],
) -> list[UUID] | None:
    """See :meth:`jobworker.WorkerDatabase.enqueue_ticks`."""
    params = {
        "name": spec.name,
        "expected": expected_last_tick,
        "last_tick": last_tick,
        "job_type": spec.job_type,
        "payload": json.dumps(spec.payload),
        "priority": spec.priority,
        "origin": PERIODIC_ORIGIN,
        "max_retry_count": spec.max_retry_count,
        "ids": [new_id() for _ in ticks],
        "unique_keys": [spec.unique_key(t) for t in ticks],
        "ticks": list(ticks),
    }
    row = service._write("enqueue_ticks", lambda c: c.execute(q("enqueue_ticks"), params).fetchone())
    assert row is not None
    moved, ids = row
    return list(ids) if moved else None


def _check_schedule_name(name: Any) -> str:
    return check_name(name, "periodic name")  # InvalidJobError before any SQL


def _info(row: Sequence[Any]) -> PeriodicInfo:
    (name, schedule, timezone, job_type, payload, priority, max_retry_count, catch_up, enabled,
     last_tick, created_at, seen_at, now, orphaned) = row  # fmt: skip
    next_tick = None
    if enabled:
        try:
            parsed, zone = parse_schedule(schedule), check_timezone(timezone)
        except JobQueueError:  # stored by another version of the code: unknown here
            parsed = None
        if parsed is not None:
            start = max(last_tick if last_tick is not None else created_at, now)
            next_tick = parsed.next_after(start, zone)
    return PeriodicInfo(
        name=name,
        schedule=schedule,
        timezone=timezone,
        job_type=job_type,
        payload=payload,
        priority=priority,
        max_retry_count=max_retry_count,
        catch_up=catch_up,
        enabled=enabled,
        last_tick=last_tick,
        next_run=next_tick,
        created_at=created_at,
        seen_at=seen_at,
        orphaned=orphaned,
    )


def _list(service: PostgresService, name: str | None) -> list[PeriodicInfo]:
    params = {"name": name, "orphaned_after": ORPHANED_AFTER.total_seconds()}
    with service._connection("list_periodic") as conn:
        return [_info(r) for r in conn.execute(q("list_schedules"), params)]


def list_periodic(service: PostgresService) -> list[PeriodicInfo]:
    """See :func:`jobqueue.list_periodic`."""
    return _list(service, None)


def get_periodic(service: PostgresService, name: str) -> PeriodicInfo:
    """See :func:`jobqueue.get_periodic`."""
    found = _list(service, _check_schedule_name(name))
    if not found:
        raise JobNotFoundError("periodic schedule", name)
    return found[0]


def set_enabled(service: PostgresService, name: str, enabled: bool) -> PeriodicInfo:
    """See :func:`jobqueue.enable_periodic` and :func:`jobqueue.disable_periodic`."""
    params = {"name": _check_schedule_name(name), "enabled": enabled}
    row = service._write(
        "enable_periodic" if enabled else "disable_periodic",
        lambda c: c.execute(q("set_schedule_enabled"), params).fetchone(),
    )
    if row is None:
        raise JobNotFoundError("periodic schedule", name)
    return get_periodic(service, name)


def run_periodic_now(service: PostgresService, name: str) -> Job:
    """See :func:`jobqueue.run_periodic_now`."""
    params = {"name": _check_schedule_name(name), "id": new_id(), "origin": PERIODIC_ORIGIN}
    row = service._write("run_periodic_now", lambda c: c.execute(q("run_schedule_now"), params).fetchone())
    if row is None:
        raise JobNotFoundError("periodic schedule", name)
    return job_from_row(row)


def delete_periodic(service: PostgresService, name: str) -> None:
    """See :func:`jobqueue.delete_periodic`."""
    params = {"name": _check_schedule_name(name)}
    row = service._write("delete_periodic", lambda c: c.execute(q("delete_schedule"), params).fetchone())
    if row is None:
        raise JobNotFoundError("periodic schedule", name)
