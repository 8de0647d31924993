"""Adding unique jobs (``unique_key``): the statements, as steps for the sync and async drivers
of :mod:`jobworker_pg._steps`, and how their results map back to the jobs added.

The partial unique index ``job_unique_key_idx`` decides: ``insert_unique_jobs`` inserts
with ``on conflict do nothing`` (a conflicting insert of an open transaction is waited
for, and is never an error), and the jobs not inserted get the job that holds their key
from ``unique_key_holders``, a new statement that sees what committed meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from jobqueue import DatabaseError, DuplicateJobError, InvalidJobError, Job, JobBundle
from jobworker_pg._inserts import (
    bundle_params,
    first_of_each_key,
    set_timestamps,
    unique_job_params,
    unique_jobs_params,
)
from jobworker_pg._queries import q
from jobworker_pg._rows import job_from_row
from jobworker_pg._steps import Execute, FetchAll, Steps

# How often an add retries a unique key whose holder finished between the conflict and the
# look-up of the holder (then the key is free again and the next insert normally succeeds).
UNIQUE_ROUNDS = 5


@dataclass(frozen=True, slots=True)
class UniquePlan:
    """Which jobs of a list are inserted (``kept``: the first job of each key, and those
    without a key) and which repeat the key of an earlier one (``later``: index -> index of
    that first one)."""

    jobs: list[Job]
    kept: list[int]
    later: dict[int, int]

    @property
    def atomic(self) -> bool:
        """Whether the add needs a transaction (a savepoint in the caller's): only when a
        DuplicateJobError may have to undo jobs already inserted."""
        if len(self.kept) > 1 and any(self.jobs[i].on_conflict == "raise" for i in self.kept):
            return True
        return any(self.jobs[i].on_conflict == "raise" for i in self.later)

    def results(self, stored: Sequence[Job]) -> list[Job]:
        """Per job added: itself when stored, else the holder of its key (``deduplicated``)."""
        out: dict[int, Job] = dict(zip(self.kept, stored, strict=True))
        for index, first in self.later.items():
            out[index] = out[first].model_copy(update={"deduplicated": True})
        return [out[i] for i in range(len(self.jobs))]


def _seconds(period: timedelta | None) -> float | None:
    return None if period is None else period.total_seconds()


def plan(jobs: list[Job], bundle: JobBundle | None = None) -> UniquePlan:
    """The :class:`UniquePlan` of checked ``jobs``; a bundle cannot hold one key twice."""
    kept, later = first_of_each_key(jobs)
    if bundle is not None and later:
        raise InvalidJobError(f"bundle jobs[{min(later)}]: its unique_key appears twice in the bundle")
    return UniquePlan(jobs, kept, later)


def insert_unique_jobs(
    unique: UniquePlan, payloads: Sequence[str], bundle: JobBundle | None = None
) -> Steps[list[Job]]:
    """Store the kept jobs of ``unique`` (and their ``bundle``); returns :meth:`UniquePlan.results`.

    A taken key raises DuplicateJobError for a job with ``on_conflict="raise"``, for a
    later job of the list with ``on_conflict="raise"``, and for any job of a bundle (a
    bundle is stored whole or not at all); the caller runs those cases atomically.
    """
    jobs = [unique.jobs[i] for i in unique.kept]
    texts = [payloads[i] for i in unique.kept]
    if bundle is not None:
        brow = yield Execute(q("insert_bundle"), bundle_params(bundle))
        assert brow is not None
        bundle.created_at, bundle.updated_at = brow
    results: list[Job | None] = [None] * len(jobs)
    pending = list(range(len(jobs)))
    for _ in range(UNIQUE_ROUNDS):
        if len(pending) == 1:
            rows = yield FetchAll(
                q("insert_unique_job"), unique_job_params(jobs[pending[0]], texts[pending[0]])
            )
        else:
            params = unique_jobs_params([jobs[i] for i in pending], [texts[i] for i in pending])
            rows = yield FetchAll(q("insert_unique_jobs"), params)
        stored = {row[0]: row[1] for row in rows}
        taken = []
        for i in pending:
            created_at = stored.get(jobs[i].id)
            if created_at is None:
                taken.append(i)
            else:
                set_timestamps((jobs[i],), created_at)
                results[i] = jobs[i]
        if not taken:
            break
        holder_params = {
            "keys": [jobs[i].unique_key for i in taken],
            "unique_fors": [_seconds(jobs[i].unique_for) for i in taken],
        }
        holder_rows = yield FetchAll(q("unique_key_holders"), holder_params)
        holders = {h.unique_key: h for h in map(job_from_row, holder_rows)}
        pending = []
        for i in taken:
            job = jobs[i]
            holder = holders.get(job.unique_key)
            if holder is None:  # it finished meanwhile: the key is free again
                pending.append(i)
                continue
            if holder.id == job.id:  # our own: a retried add whose first try had committed
                if holder.created_at is not None:
                    set_timestamps((job,), holder.created_at, holder.updated_at)
                results[i] = job
                continue
            if job.on_conflict == "raise" or bundle is not None:
                raise DuplicateJobError(job.unique_key or "", holder)
            holder.__dict__["deduplicated"] = True  # a job job_from_row just made
            results[i] = holder
        if not pending:
            break
    else:
        raise DatabaseError(
            f"unique_key {jobs[pending[0]].unique_key!r}: its holder kept finishing meanwhile"
        )
    done = [r for r in results if r is not None]
    for index, first in unique.later.items():  # a later job of the list that must not be dropped
        if unique.jobs[index].on_conflict == "raise":
            raise DuplicateJobError(unique.jobs[index].unique_key or "", done[unique.kept.index(first)])
    return unique.results(done)
