"""pg-jobqueue with a ``unique_key`` on every job (distinct keys): what unique jobs cost on
the enqueue workloads W1 and W2, next to ``pg-jobqueue``. Other workloads run as pg-jobqueue."""

from __future__ import annotations

import jobqueue
from bench.systems._common import NOOP
from bench.systems.pgjobqueue import PgJobqueue
from jobworker_pg import PostgresService


class PgJobqueueUnique(PgJobqueue):
    name = "pg-jobqueue-unique"

    def enqueue_each(self, url: str, n: int) -> None:
        with PostgresService(url) as service:
            for i in range(n):
                service.add_job(jobqueue.new_job(NOOP, "bench", {"i": i}, unique_key=f"bench:{i}"))

    def enqueue_batches(self, url: str, n: int, batch: int) -> None:
        with PostgresService(url) as service:
            for start in range(0, n, batch):
                idx = range(start, min(n, start + batch))
                service.add_jobs(
                    [jobqueue.new_job(NOOP, "bench", {"i": i}, unique_key=f"bench:{i}") for i in idx]
                )


SYSTEM = PgJobqueueUnique()
