"""Queues on PostgreSQL: claims under a queue's rules, and the rules themselves.

A queue without rules is claimed by one statement (``claim_jobs``), as fast as
before queues existed; that statement also checks, once, that the queue still
has no rules, so a queue limited or paused meanwhile is never claimed past its
rules (it returns a marker row instead of jobs then). A queue with rules is
claimed in a transaction of its own:
``lock_queue`` locks its row in ``worker.queue`` (claims of that queue take
turns, cluster-wide), then ``claim_queue_jobs`` counts running jobs and recent
starts in a snapshot taken after the lock, so it sees every earlier claim, and
claims no more than the rules allow. There is no read-then-claim race: the
counts and the claim are one statement under the lock.

Which of the two paths a queue takes is decided from a list of the queues with
rules, re-read at most every :data:`RULES_REFRESH_SECONDS`; the list only
picks the path, the statements enforce the rules.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg

from jobqueue import Job
from jobqueue._queues import (
    NO_LIMIT,
    NoLimit,
    QueueInfo,
    RateLimit,
    check_limit,
    check_paused,
    check_queue_name,
    check_rate_limit,
)
from jobworker_pg._queries import q
from jobworker_pg._rows import claimed_job_from_row

#: How old the list of queues with rules may get before a claim re-reads it.
RULES_REFRESH_SECONDS = 0.5
#: When a claim was held back by a paused queue: try again after this long.
PAUSED_RECHECK_SECONDS = 0.5
#: When a claim was held back by a concurrency limit (places free up in other processes,
#: which send no wake-up for it): try again after about this long (jittered by +-50 %).
BUSY_RECHECK_SECONDS = 0.2
#: When a claim came back short although the queue had room again a moment later.
SOON_RECHECK_SECONDS = 0.02
#: A claim with a per-key limit looks at up to this many waiting jobs per place it fills,
#: passing over the jobs of keys at their limit.
KEY_SCAN_FACTOR = 10
_MIN_KEY_SCAN = 100


class RulesCache:
    """The names of the queues that have rules, re-read when older than RULES_REFRESH_SECONDS.
    Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    def stale(self) -> bool:
        """True when the list should be re-read before the next claim."""
        with self._lock:
            return time.monotonic() - self._read_at >= RULES_REFRESH_SECONDS

    def has_rules(self, queue: str) -> bool:
        """Whether ``queue`` had rules when last read (then claim_under_rules claims it)."""
        with self._lock:
            return queue in self._names

    def add(self, queue: str) -> None:
        """``queue`` was found to have rules (by the check inside ``claim_jobs``)."""
        with self._lock:
            self._names |= {queue}

    def refresh(self, conn: psycopg.Connection[Any]) -> None:
        """Re-read the list on ``conn`` (one small statement)."""
        names = frozenset(row[0] for row in conn.execute(q("queue_rules")))
        with self._lock:
            self._names, self._read_at = names, time.monotonic()

    def forget(self) -> None:
        """Re-read on the next claim (this process just changed a queue's rules)."""
        with self._lock:
            self._read_at = float("-inf")


@dataclass(frozen=True, slots=True)
class RuledClaim:
    """What a claim under a queue's rules took, and when the queue may give more."""

    jobs: list[Job]
    retry_in: float | None  # seconds; None when the rules did not hold the claim back


def claim_plain(
    conn: psycopg.Connection[Any],
    queue: str,
    job_types: Sequence[str],
    limit: int,
    token: UUID,
    *,
    prepare: bool = False,
) -> list[Job] | None:
    """``claim_jobs``: one statement, for a queue believed to have no rules. None when the
    queue has rules after all (the statement then claimed nothing). ``prepare``: as a
    prepared statement (see PostgresService's ``prepare``)."""
    params = {"queue": queue, "types": list(job_types), "limit": limit, "token": token}
    rows = conn.execute(q("claim_jobs"), params, prepare=prepare).fetchall()
    if rows and rows[-1][0] is None:  # the marker row: the queue has rules
        return None
    return [claimed_job_from_row(r, token, queue) for r in rows]


def claim_under_rules(
    conn: psycopg.Connection[Any],
    queue: str,
    job_types: Sequence[str],
    limit: int,
    token: UUID,
    *,
    prepare: bool = False,
) -> RuledClaim:
    """Claim from a queue with rules in one transaction on ``conn`` (autocommit): lock the
    queue's row, claim within its rules, and when that fell short say when to try again."""
    with conn.transaction():
        rules = conn.execute(q("lock_queue"), {"queue": queue}).fetchone()
        if rules is None:  # the rules were removed: the plain claim applies (under the same check)
            plain = claim_plain(conn, queue, job_types, limit, token, prepare=prepare)
            return RuledClaim(plain or [], None)
        concurrency, per_key, rate_count, rate_per, paused = rules
        if paused:
            return RuledClaim([], PAUSED_RECHECK_SECONDS)
        params = {
            "queue": queue,
            "types": list(job_types),
            "limit": limit,
            "token": token,
            "concurrency": concurrency,
            "per_key": per_key,
            "rate_count": rate_count,
            "rate_per": rate_per,
            "scan": limit if per_key is None else max(limit * KEY_SCAN_FACTOR, _MIN_KEY_SCAN),
            # Jittered: processes held back together would otherwise look again together, and
            # the one whose claim ran first would win every freed place.
            "recheck": BUSY_RECHECK_SECONDS * random.uniform(0.5, 1.5),
            "soon": SOON_RECHECK_SECONDS,
        }
        rows = conn.execute(q("claim_queue_jobs"), params, prepare=prepare).fetchall()
        jobs = [claimed_job_from_row(r, token, queue) for r in rows]
        retry_in = None
        if len(jobs) < limit:
            row = conn.execute(q("queue_hold"), params).fetchone()
            retry_in = None if row is None or row[0] is None else float(row[0])
    return RuledClaim(jobs, retry_in)


# -- the rules ------------------------------------------------------------------------------


def _info(row: Sequence[Any], waiting: int = 0, running: int = 0) -> QueueInfo:
    name, concurrency, per_key, rate_count, rate_per, paused = row[:6]
    rate = None if rate_count is None else RateLimit(rate_count, timedelta(seconds=rate_per))
    return QueueInfo(name, concurrency, per_key, rate, bool(paused), waiting, running)


def configure_params(
    name: Any, concurrency: Any, per_key_concurrency: Any, rate_limit: Any, paused: Any
) -> dict[str, Any]:
    """Check ``configure_queue``'s arguments (InvalidJobError before any SQL) and return the
    parameters of the ``configure_queue`` statement."""
    name = check_queue_name(name)
    concurrency = check_limit(concurrency, "concurrency")
    per_key_concurrency = check_limit(per_key_concurrency, "per_key_concurrency")
    rate_limit = check_rate_limit(rate_limit)
    paused = check_paused(paused)

    def value(v: int | NoLimit | None) -> int | None:
        return None if v is None or v is NO_LIMIT else v

    rate = rate_limit if isinstance(rate_limit, RateLimit) else None
    return {
        "name": name,
        "set_concurrency": concurrency is not None,
        "concurrency": value(concurrency),
        "set_per_key": per_key_concurrency is not None,
        "per_key": value(per_key_concurrency),
        "set_rate": rate_limit is not None,
        "rate_count": None if rate is None else rate.count,
        "rate_per": None if rate is None else rate.per.total_seconds(),
        "paused": paused,
    }


def configure_queue(conn: psycopg.Connection[Any], params: dict[str, Any]) -> QueueInfo:
    """Store a queue's rules (params from :func:`configure_params`); returns them."""
    row = conn.execute(q("configure_queue"), params).fetchone()
    assert row is not None
    return _info(row)


def list_queues(conn: psycopg.Connection[Any]) -> list[QueueInfo]:
    """Every queue with rules or unstopped jobs, by name, with its counts."""
    return [_info(row, row[6], row[7]) for row in conn.execute(q("list_queues"))]
