"""Prometheus metrics: a worker's own counters (an observer of its pool) and the queue's job
counts (a collector the dashboard serves at ``/metrics``).

Needs ``prometheus-client`` (``pip install 'pg-jobqueue[metrics]'``)::

    import jobworker
    from jobworker_pg.metrics import WorkerMetrics, serve_metrics

    jobworker.add_observer(WorkerMetrics())   # counters of this process's pool
    serve_metrics(9100)                       # http://localhost:9100/metrics

``jobqueue worker --metrics-port 9100`` does both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from jobqueue import Job
from jobworker import OutcomeKind, WorkerObserver

__all__ = ["JobCountsCollector", "WorkerMetrics", "serve_metrics"]

#: Buckets for handler run times and pickup latency, in seconds (5 ms to 1 h).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
#: Buckets for claim and save statements, in seconds.
STATEMENT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

_OUTCOME_COUNTER = {
    OutcomeKind.SUCCEEDED: "succeeded",
    OutcomeKind.FAILED: "failed",
    OutcomeKind.RETRY: "retried",
}


class WorkerMetrics(WorkerObserver):
    """A pool observer that counts attempts by type and outcome and times claims, saves and
    handlers. Add it to a pool with ``pool.add_observer`` / ``jobworker.add_observer``.

    ``registry`` defaults to prometheus-client's global registry; a process has one
    WorkerMetrics per registry (several pools can share it).
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.started = Counter("jobqueue_jobs_started", "Attempts started", ["type"], registry=registry)
        self.succeeded = Counter(
            "jobqueue_jobs_succeeded", "Attempts that succeeded", ["type"], registry=registry
        )
        self.failed = Counter(
            "jobqueue_jobs_failed",
            "Attempts that failed for good (no retry left)",
            ["type"],
            registry=registry,
        )
        self.retried = Counter(
            "jobqueue_jobs_retried",
            "Attempts that failed and were scheduled again",
            ["type"],
            registry=registry,
        )
        self.reaped = Counter(
            "jobqueue_jobs_reaped",
            "Jobs of dead workers requeued or failed by this process",
            registry=registry,
        )
        self.run_seconds = Histogram(
            "jobqueue_job_run_seconds",
            "Handler run time",
            ["type"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.pickup_seconds = Histogram(
            "jobqueue_job_pickup_seconds",
            "From when a job was due (enqueued or scheduled) to the start of its first attempt",
            ["type"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.claim_seconds = Histogram(
            "jobqueue_claim_seconds", "Claim statements", buckets=STATEMENT_BUCKETS, registry=registry
        )
        self.save_seconds = Histogram(
            "jobqueue_save_outcomes_seconds", "Outcome writes", buckets=STATEMENT_BUCKETS, registry=registry
        )

    def jobs_claimed(self, jobs: Sequence[Job], seconds: float) -> None:
        self.claim_seconds.observe(seconds)
        for job in jobs:
            if job.attempt == 1 and job.started_at is not None and job.created_at is not None:
                due = job.created_at
                if job.start_at is not None and job.start_at > due:
                    due = job.start_at
                self.pickup_seconds.labels(job.type).observe(max(0.0, (job.started_at - due).total_seconds()))

    def attempt_started(self, job: Job) -> object:
        self.started.labels(job.type).inc()
        return None

    def attempt_ended(self, job: Job, state: object, error: BaseException | None, seconds: float) -> None:
        self.run_seconds.labels(job.type).observe(seconds)

    def attempt_settled(self, job: Job, kind: OutcomeKind) -> None:
        getattr(self, _OUTCOME_COUNTER[kind]).labels(job.type).inc()

    def outcomes_saved(self, count: int, seconds: float) -> None:
        self.save_seconds.observe(seconds)

    def jobs_reaped(self, count: int) -> None:
        self.reaped.inc(count)


#: (job type, state, number of jobs, whether the number is a planner estimate)
JobCount = tuple[str, str, int]


class JobCountsCollector(Collector):
    """Exposes ``jobqueue_jobs{type, state}`` from ``counts()``, read at every scrape."""

    def __init__(self, counts: Callable[[], Iterable[JobCount]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        started = time.monotonic()
        family = GaugeMetricFamily(
            "jobqueue_jobs", "Jobs in the queue by type and state", labels=["type", "state"]
        )
        for job_type, state, value in self._counts():
            family.add_metric([job_type, state], value)
        yield family
        scrape = GaugeMetricFamily("jobqueue_jobs_scrape_seconds", "Time to count the jobs for this scrape")
        scrape.add_metric([], time.monotonic() - started)
        yield scrape


def serve_metrics(port: int, addr: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY) -> None:
    """Serve ``registry`` at ``http://addr:port/metrics`` on a daemon thread."""
    start_http_server(port, addr=addr, registry=registry)
