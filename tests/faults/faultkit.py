"""Shared pieces of the fault-injection suite: worker fleets, run accounting, the figures report.

Workers are ``tests/worker_app.py`` processes (see tests/processes.py); their
``exec`` handler logs every run in ``exec_log`` (job_id, attempt, pid, started_at,
ended_at) over a connection of its own. Tests record the SIGKILLs they send in
``fault_kills`` so that a killed run's end is known, and the accounting below
turns both tables into the figures each scenario asserts and reports.

Figures go, one JSON object a line, to the file named by $JOBQUEUE_FAULTS_REPORT
(default ``/tmp/jobqueue-faults-report.jsonl``, emptied when the session starts),
and to stdout (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from helpers import wait_for
from processes import WorkerProcess
from psycopg.conninfo import make_conninfo
from worker_app import EXEC_LOG_APP, EXEC_LOG_DDL

import jobqueue

REPORT_ENV = "JOBQUEUE_FAULTS_REPORT"
DEFAULT_REPORT = "/tmp/jobqueue-faults-report.jsonl"

#: application_name of the library's connections in worker processes (pool and LISTEN).
WORKER_APP = "jobqueue-faults-worker"
#: application_name of the test's own connections; fault injection never touches them.
TEST_APP = "jobqueue-faults-test"

# Realistic liveness settings for a loaded 2-core machine: a live worker may be starved for
# over a second, so dead_for is 20 heartbeats. Used wherever recovery time is not measured.
STEADY = {"JQ_HEARTBEAT": "0.5", "JQ_DEAD_FOR": "10", "JQ_REAPER": "0.5"}
STEADY_DEAD_FOR = 10.0

KILLS_DDL = "create table if not exists fault_kills (pid int primary key, killed_at timestamptz not null)"


def report_path() -> Path:
    return Path(os.environ.get(REPORT_ENV) or DEFAULT_REPORT)


def report(scenario: str, **figures: Any) -> None:
    """Append one scenario's figures to the report file and print them."""
    line = json.dumps({"scenario": scenario, **figures}, default=str, sort_keys=False)
    with report_path().open("a", encoding="utf-8") as f:
        f.write(line + "\n")
    print(f"FAULTS {line}")


# -- database access for the test itself -----------------------------------------------------


def connect(url: str, **kw: Any) -> psycopg.Connection[Any]:
    """An autocommit connection tagged TEST_APP, so fault injection leaves it alone."""
    return psycopg.connect(url, autocommit=True, application_name=TEST_APP, **kw)


def one(url: str, query: str, params: Any = None) -> Any:
    """The first column of the first row of ``query`` (None when no row), on a new connection."""
    with connect(url) as conn:
        row = conn.execute(query, params).fetchone()
        return None if row is None else row[0]


def all_rows(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with connect(url) as conn:
        return conn.execute(query, params).fetchall()


def worker_url(url: str) -> str:
    """``url`` with the application_name that marks the library's connections in workers."""
    return make_conninfo(url, application_name=WORKER_APP)


def prepare(url: str) -> None:
    """Create the harness tables (exec_log, fault_kills) before any worker or fault runs."""
    with connect(url) as conn:
        conn.execute(EXEC_LOG_DDL)
        conn.execute(KILLS_DDL)


def exec_jobs(
    n: int, sleep: float | Callable[[int], float] = 0.0, *, max_retry_count: int = 0, **kw: Any
) -> list[jobqueue.Job]:
    """``n`` jobs of type ``exec``; ``sleep`` is a number or a function of the job's index."""
    return [
        jobqueue.new_job(
            "exec",
            "faults",
            {"i": i, "sleep": sleep(i) if callable(sleep) else sleep},
            max_retry_count=max_retry_count,
            **kw,
        )
        for i in range(n)
    ]


def unfinished(url: str) -> int:
    return int(one(url, "select count(*) from worker.job where stopped_at is null"))


def waiting(url: str) -> int:
    """Jobs not claimed yet (due or not)."""
    return int(one(url, "select count(*) from worker.job where started_at is null and stopped_at is null"))


def runs_started(url: str) -> int:
    return int(one(url, "select count(*) from exec_log"))


def runs_ended(url: str) -> int:
    return int(one(url, "select count(*) from exec_log where ended_at is not null"))


def throughput(url: str, seconds: float) -> float:
    """Runs ended per second over the next ``seconds`` (a measuring window, not a wait for state)."""
    before = runs_ended(url)
    start = time.monotonic()
    time.sleep(seconds)
    return (runs_ended(url) - before) / (time.monotonic() - start)


# -- worker fleets ----------------------------------------------------------------------------


class Fleet:
    """The worker processes of one test; all are killed (and reaped) at teardown."""

    def __init__(self) -> None:
        self.all: list[WorkerProcess] = []

    def spawn(self, url: str, threads: int = 4, **env: str) -> WorkerProcess:
        """Start a worker process (JQ_* settings in ``env``) without waiting for it."""
        w = WorkerProcess(worker_url(url), threads, **env)
        self.all.append(w)
        return w

    def start(self, url: str, threads: int = 4, **env: str) -> WorkerProcess:
        """Start a worker process and wait until its threads run."""
        return self.spawn(url, threads, **env).wait_ready(60)

    def start_many(self, url: str, n: int, threads: int = 4, **env: str) -> list[WorkerProcess]:
        workers = [self.spawn(url, threads, **env) for _ in range(n)]
        for w in workers:
            w.wait_ready(60)
        return workers

    def kill(self, url: str, w: WorkerProcess) -> None:
        """SIGKILL ``w`` and record when (database clock) in fault_kills."""
        w.kill()
        with connect(url) as conn:
            conn.execute(
                "insert into fault_kills (pid, killed_at) values (%s, clock_timestamp())"
                " on conflict (pid) do nothing",
                (w.pid,),
            )

    def record_death(self, url: str, w: WorkerProcess) -> None:
        """Record in fault_kills that ``w`` died by itself (a poison pill), noticed just now."""
        w.proc.wait(10)
        with connect(url) as conn:
            conn.execute(
                "insert into fault_kills (pid, killed_at) values (%s, clock_timestamp())"
                " on conflict (pid) do nothing",
                (w.pid,),
            )

    def close(self) -> None:
        for w in self.all:
            if w.alive:
                w.resume()  # a paused process must not keep locks past the test
            w.kill()

    def full_log(self) -> str:
        return "".join(w.log() for w in self.all)

    def logs(self) -> str:
        return "\n".join(f"--- worker {w.pid}\n{w.log()[-4000:]}" for w in self.all)


# -- run accounting ---------------------------------------------------------------------------


@dataclass
class JobRecord:
    id: UUID
    attempt: int
    stopped: bool
    failed: bool
    error_msg: str | None
    lost_attempts: list[int]  # attempts ended by the reaper ("worker lost")


@dataclass
class Run:
    job_id: UUID
    attempt: int
    pid: int
    started_at: datetime
    ended_at: datetime | None


@dataclass
class Accounting:
    """Jobs, runs and kills of one test database, and the invariants over them."""

    jobs: dict[UUID, JobRecord]
    runs: list[Run]
    kills: dict[int, datetime]
    runs_by_job: dict[UUID, list[Run]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        by_job: dict[UUID, list[Run]] = defaultdict(list)
        for r in self.runs:
            by_job[r.job_id].append(r)
        self.runs_by_job = dict(by_job)

    @classmethod
    def load(cls, url: str, job_type: str = "exec") -> Accounting:
        with connect(url) as conn:
            jobs = {
                row[0]: JobRecord(
                    id=row[0],
                    attempt=row[1],
                    stopped=row[2] is not None,
                    failed=row[2] is not None and row[3] is not None,
                    error_msg=row[3],
                    lost_attempts=[e["attempt"] for e in row[4] if e.get("type") == "WorkerLost"],
                )
                for row in conn.execute(
                    "select id, attempt, stopped_at, error_msg, errors from worker.job where type = %s",
                    (job_type,),
                )
            }
            # One row per (job, attempt, pid): an insert retried after a cut connection may repeat.
            runs = [
                Run(*row)
                for row in conn.execute(
                    "select job_id, attempt, pid, min(started_at), max(ended_at)"
                    " from exec_log group by job_id, attempt, pid"
                )
            ]
            kills = dict(conn.execute("select pid, killed_at from fault_kills").fetchall())
        return cls(jobs, runs, kills)

    # The invariants, each returning its violations (empty when it holds).

    def lost(self) -> list[UUID]:
        """Jobs not stopped, or stopped failed (no scenario here should exhaust its retries)."""
        return [j.id for j in self.jobs.values() if not j.stopped or j.failed]

    def never_ran(self) -> list[UUID]:
        """Jobs that succeeded without any completed run."""
        return [
            j.id
            for j in self.jobs.values()
            if j.stopped and not j.failed and not any(r.ended_at for r in self.runs_by_job.get(j.id, []))
        ]

    def attempts_run_twice(self) -> list[tuple[UUID, int]]:
        """(job, attempt) pairs run by two processes: one claim must never run twice."""
        seen = Counter((r.job_id, r.attempt) for r in self.runs)
        return [k for k, n in seen.items() if n > 1]

    def overlapping(self) -> list[tuple[UUID, int, int]]:
        """Pairs of different attempts of one job whose runs overlap in time. A killed run
        ends when it was killed; a run with no end and no kill never ends."""

        def end(r: Run) -> datetime | None:
            return r.ended_at or self.kills.get(r.pid)

        bad = []
        for job_id, runs in self.runs_by_job.items():
            for a in runs:
                for b in runs:
                    if a.attempt < b.attempt:
                        a_end, b_end = end(a), end(b)
                        if (b_end is None or a.started_at < b_end) and (
                            a_end is None or b.started_at < a_end
                        ):
                            bad.append((job_id, a.attempt, b.attempt))
        return bad

    def runs_over_bound(self) -> list[tuple[UUID, int, int]]:
        """Jobs run more often than 1 + the attempts the reaper ended (the kills that hit them)."""
        return [
            (j.id, len(self.runs_by_job.get(j.id, [])), len(j.lost_attempts))
            for j in self.jobs.values()
            if len(self.runs_by_job.get(j.id, [])) > 1 + len(j.lost_attempts)
        ]

    def live_runs_reaped(self) -> list[tuple[UUID, int, int]]:
        """Attempts the reaper ended although the process running them was never killed:
        a live worker taken for dead."""
        runs = {(r.job_id, r.attempt): r for r in self.runs}
        bad = []
        for j in self.jobs.values():
            for attempt in j.lost_attempts:
                run = runs.get((j.id, attempt))
                if run is not None and run.pid not in self.kills:
                    bad.append((j.id, attempt, run.pid))
        return bad

    def unfinished_live_runs(self) -> list[Run]:
        """Runs of processes never killed that did not end (a live handler abandoned)."""
        return [r for r in self.runs if r.ended_at is None and r.pid not in self.kills]

    def claims_lost_in_flight(self) -> list[tuple[UUID, int]]:
        """Reaped attempts that never started a run: the claim committed but its worker never
        got the answer (connection cut at commit) or died before starting it."""
        started = {(r.job_id, r.attempt) for r in self.runs}
        return [(j.id, a) for j in self.jobs.values() for a in j.lost_attempts if (j.id, a) not in started]

    def check(self, *, reaps_allowed: bool) -> None:
        """Assert every invariant, with the offending rows in the message. Without
        ``reaps_allowed`` (no worker died, no connection was cut) no job may be reaped at all."""
        assert self.lost() == [], f"lost or failed jobs: {self.lost()[:10]}"
        assert self.never_ran() == [], f"jobs succeeded without a run: {self.never_ran()[:10]}"
        assert self.attempts_run_twice() == [], self.attempts_run_twice()[:10]
        assert self.overlapping() == [], f"overlapping runs: {self.overlapping()[:10]}"
        assert self.runs_over_bound() == [], f"(job, runs, hits): {self.runs_over_bound()[:10]}"
        assert self.live_runs_reaped() == [], f"live workers taken for dead: {self.live_runs_reaped()[:10]}"
        assert self.unfinished_live_runs() == [], self.unfinished_live_runs()[:10]
        if not reaps_allowed:
            hit = [j.id for j in self.jobs.values() if j.lost_attempts]
            assert hit == [], f"jobs reaped although no worker died: {hit[:10]}"

    def figures(self) -> dict[str, Any]:
        runs_per_job = Counter(len(v) for v in self.runs_by_job.values())
        hits = [len(j.lost_attempts) for j in self.jobs.values()]
        return {
            "jobs": len(self.jobs),
            "jobs_lost": len(self.lost()),
            "runs": len(self.runs),
            "extra_runs": len(self.runs) - len(self.runs_by_job),
            "max_runs_per_job": max(runs_per_job, default=0),
            "jobs_hit_by_a_kill": sum(1 for h in hits if h),
            "max_hits_per_job": max(hits, default=0),
            "overlapping_runs": len(self.overlapping()),
            "claims_lost_in_flight": len(self.claims_lost_in_flight()),
        }


# -- small statistics -------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    """min / median / p95 / max of ``values``, rounded to milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "min": round(ordered[0], 3),
        "median": round(statistics.median(ordered), 3),
        "p95": round(p95, 3),
        "max": round(ordered[-1], 3),
    }


def log_records(lines: Iterable[str]) -> int:
    """Log records among worker output lines (tracebacks and the like excluded)."""
    return sum(1 for line in lines if line.startswith("[worker "))


def log_sources(lines: Iterable[str]) -> dict[str, int]:
    """Log records among worker output lines, counted by level, logger and the start of the
    message (numbers as N), most frequent first."""
    counts: Counter[str] = Counter()
    for line in lines:
        if not line.startswith("[worker "):
            continue
        record = line.split("] ", 1)[1]  # "ERROR jobworker._errors: saving 1 job outcomes ..."
        source, _, message = record.partition(": ")
        counts[f"{source}: {re.sub(r'[0-9.]+', 'N', message.split(':')[0])[:70]}"] += 1
    return dict(counts.most_common())


__all__ = [
    "EXEC_LOG_APP",
    "STEADY",
    "STEADY_DEAD_FOR",
    "TEST_APP",
    "WORKER_APP",
    "Accounting",
    "Fleet",
    "all_rows",
    "connect",
    "exec_jobs",
    "log_records",
    "log_sources",
    "one",
    "prepare",
    "report",
    "runs_ended",
    "runs_started",
    "summary",
    "throughput",
    "unfinished",
    "wait_for",
    "waiting",
    "worker_url",
]
