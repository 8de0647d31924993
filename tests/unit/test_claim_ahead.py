"""The adaptive claim-ahead (prefetch="auto", the default)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from fakes import FAST, FakeDatabase

from jobqueue import Job, new_job
from jobworker import AUTO_PREFETCH_LIMIT, Registry, WorkerPool, WorkerSettings
from jobworker._claim_ahead import ClaimAhead


def test_the_default_is_adaptive() -> None:
    assert WorkerSettings().prefetch == "auto"


def test_nothing_ahead_before_a_claim_and_a_job_are_measured() -> None:
    ahead = ClaimAhead(4, "auto")
    assert ahead.value == 0
    ahead.claim_took(0.002)
    assert ahead.value == 0  # no job seen yet
    ahead.job_ran(0.00001)
    assert ahead.value == 0  # grows only when a claim is made


def test_short_jobs_grow_it_by_doubling_up_to_the_limit() -> None:
    ahead = ClaimAhead(4, "auto")
    ahead.job_ran(0.00001)
    values = []
    for _ in range(10):
        ahead.claim_took(0.002)
        values.append(ahead.value)
    assert values[:6] == [1, 2, 4, 8, 16, 32] and values[-1] == AUTO_PREFETCH_LIMIT


def test_jobs_longer_than_a_claim_round_trip_are_not_claimed_ahead() -> None:
    ahead = ClaimAhead(1, "auto")
    for _ in range(20):
        ahead.job_ran(0.050)
        ahead.claim_took(0.002)
    assert ahead.value == 0


def test_one_slow_job_stops_it_at_once() -> None:
    ahead = ClaimAhead(2, "auto")
    ahead.job_ran(0.00001)
    for _ in range(10):
        ahead.claim_took(0.002)
    assert ahead.value == AUTO_PREFETCH_LIMIT
    ahead.job_ran(1.0)
    assert ahead.value == 0


def test_one_job_delayed_by_the_machine_does_not_stop_it() -> None:
    ahead = ClaimAhead(1, "auto")
    for _ in range(10):
        ahead.job_ran(0.00002)
        ahead.claim_took(0.002)
    assert ahead.value == AUTO_PREFETCH_LIMIT
    ahead.job_ran(0.010)  # a descheduled thread: five claim round trips
    ahead.claim_took(0.002)
    assert ahead.value == AUTO_PREFETCH_LIMIT


def test_jobs_turning_slow_stop_it_once_they_are_typical() -> None:
    ahead = ClaimAhead(1, "auto")
    for _ in range(10):
        ahead.job_ran(0.00002)
        ahead.claim_took(0.002)
    for _ in range(40):
        ahead.job_ran(0.05)
    ahead.claim_took(0.002)
    assert ahead.value == 0


def test_a_fixed_prefetch_never_moves() -> None:
    ahead = ClaimAhead(2, 8)
    ahead.job_ran(5.0)
    ahead.claim_took(0.001)
    assert ahead.value == 8


class RoundTripDatabase(FakeDatabase):
    """A fake whose claims take as long as a round trip to a real server (2 ms)."""

    def claim_jobs(self, job_types: Sequence[str], limit: int, *, queue: str = "default") -> list[Job]:
        time.sleep(0.002)
        return super().claim_jobs(job_types, limit, queue=queue)


def _claim_calls(
    handlers: dict[str, Callable[[Job], object]], jobs: dict[str, int], threads: int, async_places: int = 0
) -> list[tuple[list[str], int, int]]:
    """Run ``jobs[t]`` jobs of each type ``t`` on an adaptive pool; its claim calls that got
    jobs, as ``(types, limit, claimed)``."""
    db, registry = RoundTripDatabase(), Registry()
    for job_type, handler in handlers.items():
        registry.register(job_type, handler)
    added = [db.add(new_job(t, "o", i)) for t, n in jobs.items() for i in range(n)]
    pool = WorkerPool(db, registry, FAST.replace(prefetch="auto"), name="jobworker-auto")
    try:
        pool.start_threads(threads, async_concurrency=async_places or None)
        db.wait_stopped(*(j.id for j in added))
    finally:
        pool.stop_threads()
    return [call for call in db.claim_calls if call[2]]


def _claim_limits(handler: Callable[[Job], object], jobs: int, threads: int) -> list[int]:
    return [limit for _, limit, _ in _claim_calls({"t": handler}, {"t": jobs}, threads)]


def test_a_pool_of_short_jobs_claims_ahead_within_the_limit() -> None:
    limits = _claim_limits(lambda job: None, 400, 2)
    assert limits[0] == 2  # nothing measured yet: the threads only
    assert max(limits) > 2 and max(limits) <= 2 + AUTO_PREFETCH_LIMIT, limits


def test_a_pool_of_jobs_longer_than_a_claim_never_claims_ahead() -> None:
    limits = _claim_limits(lambda job: time.sleep(0.02), 8, 1)
    assert set(limits) == {1}, limits


async def _short_async(job: Job) -> None:
    return None


async def _long_async(job: Job) -> None:
    await asyncio.sleep(0.02)


def test_an_async_lane_of_short_jobs_claims_ahead_within_the_limit() -> None:
    limits = [limit for _, limit, _ in _claim_calls({"a": _short_async}, {"a": 400}, 0, async_places=2)]
    assert limits[0] == 2  # nothing measured yet: the async places only
    assert max(limits) > 2 and max(limits) <= 2 + AUTO_PREFETCH_LIMIT, limits


def test_an_async_lane_of_jobs_longer_than_a_claim_never_claims_ahead() -> None:
    limits = [limit for _, limit, _ in _claim_calls({"a": _long_async}, {"a": 8}, 0, async_places=1)]
    assert set(limits) == {1}, limits


def test_each_lane_adapts_to_its_own_jobs() -> None:
    """Long thread jobs keep the thread lane from claiming ahead while the async lane's
    short jobs make it claim ahead: one lane's jobs do not set the other's claim-ahead."""
    calls = _claim_calls(
        {"slow": lambda job: time.sleep(0.02), "quick": _short_async},
        {"slow": 8, "quick": 400},
        1,
        async_places=2,
    )
    thread_limits = [limit for types, limit, _ in calls if types == ["slow"]]
    async_limits = [limit for types, limit, _ in calls if types == ["quick"]]
    assert thread_limits and set(thread_limits) == {1}, thread_limits
    assert max(async_limits) > 2 and max(async_limits) <= 2 + AUTO_PREFETCH_LIMIT, async_limits
