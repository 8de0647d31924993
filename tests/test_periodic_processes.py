"""Periodic jobs across worker processes (tests/worker_app.py, real PostgreSQL): each tick of an
every-second schedule is enqueued exactly once by three processes, while one of them is
SIGKILLed and restarted; a disabled schedule enqueues nothing in any process from then on."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg
import pytest
from helpers import wait_for as wait_until
from processes import WorkerProcess, scalar

import jobqueue
from jobworker_pg import PostgresService

pytestmark = pytest.mark.slow

RUN_SECONDS = 20
# Schedules of worker_app (JQ_PERIODIC): "beat" runs all along, "stoppable" is disabled midway.
ENV = {"JQ_PERIODIC": "beat,stoppable", "JQ_TYPES": "exec", "JQ_HEARTBEAT": "0.5", "JQ_DEAD_FOR": "10"}


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.kill()


def _ticks(url: str, schedule: str) -> list[tuple[datetime, int]]:
    """(scheduled_for, number of jobs) per tick of ``schedule``, in tick order."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select scheduled_for, count(*) from worker.job where payload->>'schedule' = %s"
            " group by scheduled_for order by scheduled_for",
            (schedule,),
        ).fetchall()
    return [(r[0], int(r[1])) for r in rows]


def _count(url: str, schedule: str) -> int:
    return int(scalar(url, "select count(*) from worker.job where payload->>'schedule' = %s", (schedule,)))


def test_three_processes_enqueue_each_tick_once_through_a_sigkill(
    service: PostgresService, db_url: str, workers: list[WorkerProcess]
) -> None:
    workers.extend(WorkerProcess(db_url, 2, **ENV) for _ in range(3))
    for w in workers:
        w.wait_ready(60)
    started = time.monotonic()
    wait_until(lambda: _count(db_url, "beat") >= 3, timeout=60)

    # SIGKILL one process mid-run and start a new one in its place.
    wait_until(lambda: time.monotonic() - started >= RUN_SECONDS / 3, timeout=60)
    workers[0].kill()
    workers.append(WorkerProcess(db_url, 2, **ENV))
    workers[-1].wait_ready(60)

    # Disable "stoppable" in every process at once: its count must not grow from now on.
    wait_until(lambda: time.monotonic() - started >= RUN_SECONDS / 2, timeout=60)
    with jobqueue.use_service(service):
        jobqueue.disable_periodic("stoppable")
    stoppable_at_disable = _count(db_url, "stoppable")
    beat_at_disable = _count(db_url, "beat")

    wait_until(lambda: time.monotonic() - started >= RUN_SECONDS, timeout=60)
    # Every live process has been looping since: "beat" gained ticks after the disable.
    wait_until(lambda: _count(db_url, "beat") >= beat_at_disable + 3, timeout=60)
    for w in workers[1:]:
        assert w.alive, w.log

    beat = _ticks(db_url, "beat")
    assert len(beat) >= RUN_SECONDS - 5, beat
    assert all(n == 1 for _, n in beat), [t for t in beat if t[1] != 1]
    times = [t for t, _ in beat]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g == timedelta(seconds=1) for g in gaps), gaps  # no tick missed, kill or not
    assert _count(db_url, "stoppable") == stoppable_at_disable
    assert all(n == 1 for _, n in _ticks(db_url, "stoppable"))
    # The jobs ran too (the tick handler), each once.
    wait_until(
        lambda: (
            scalar(db_url, "select count(*) from worker.job where type = 'tick' and stopped_at is null") == 0
        ),
        timeout=60,
    )
