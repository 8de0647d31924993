"""``/metrics`` of the dashboard: the queue's job counts by type and state, for Prometheus."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from jobworker_pg.dashboard._data import DashboardData
from jobworker_pg.metrics import JobCount, JobCountsCollector


def _counts(data: DashboardData) -> Iterator[JobCount]:
    overview = data.overview()
    for row in overview.types:
        for state in ("pending", "scheduled", "retrying", "running", "failed", "cancelled"):
            yield row.type, state, getattr(row, state)
        yield row.type, "succeeded_last_hour", row.succeeded_last_hour
    # Succeeded jobs by type would need a count over every finished job: only the total.
    yield "all", "succeeded", overview.succeeded


def metrics_endpoint(data: DashboardData) -> Callable[[Request], Response]:
    """A route serving this dashboard's job counts in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobCountsCollector(lambda: _counts(data)))

    def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
