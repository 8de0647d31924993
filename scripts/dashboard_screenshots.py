"""Screenshots of the dashboard for docs/ and the README, taken by the browser the tests use.

Usage: .venv/bin/python scripts/dashboard_screenshots.py POSTGRES_URL
(an empty database: it installs the schema, runs a few hundred demo jobs through a worker
pool, then photographs the overview and a failed job's page).
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

import psycopg
from browser import chromium
from dashboard_server import serve_dashboard
from helpers import wait_for

import jobqueue
from jobworker import Registry, WorkerPool, WorkerSettings
from jobworker_pg import PostgresService, ProcessRegistry, install_schema

DOCS = Path(__file__).parent.parent / "docs"


def main(url: str) -> None:
    install_schema(url)
    service = PostgresService(url)
    registry = Registry()

    def send_invoice(job: jobqueue.Job) -> dict[str, object]:
        if job.payload["customer"] % 9 == 0:
            raise ConnectionError(f"SMTP server refused customer {job.payload['customer']}: 421 try later")
        return {"sent": True}

    registry.register("billing.send_invoice", send_invoice)
    registry.register_schedule_retry("billing.send_invoice", lambda job: datetime.now(UTC))
    registry.register("reports.render", lambda job: {"pages": random.randint(1, 40)})
    registry.register("search.reindex", lambda job: None)
    pool = WorkerPool(service, registry, WorkerSettings(), name="screenshots")
    pool.add_observer(ProcessRegistry(url))
    service.add_jobs(
        [
            jobqueue.new_job("billing.send_invoice", "checkout", {"customer": i}, max_retry_count=2)
            for i in range(180)
        ]
    )
    service.add_jobs([jobqueue.new_job("reports.render", "cron", {"report": i}) for i in range(120)])
    service.add_jobs([jobqueue.new_job("search.reindex", "admin", {"shard": i}) for i in range(60)])
    pool.start_threads(4)
    wait_for(lambda: not service.get_all_jobs_to_do(), 120, "the demo jobs ran")
    failed = next(j for j in service.get_all_jobs_with_errors() if j.type == "billing.send_invoice")
    pool.finish_threads(10)
    with psycopg.connect(url, autocommit=True) as conn:
        # Spread the finished jobs over the last hour, as a day's traffic would.
        conn.execute(
            "update worker.job set stopped_at = now() - random() * interval '58 minutes'"
            " where stopped_at is not null and id <> %s",
            (failed.id,),
        )
    # Waiting work for types no worker here serves, some of it scheduled.
    service.add_jobs([jobqueue.new_job("images.thumbnail", "upload", {"image": i}) for i in range(75)])
    later = datetime.now(UTC) + timedelta(hours=2)
    service.add_jobs(
        [jobqueue.new_job("digest.weekly", "cron", {"user": i}, start_at=later) for i in range(30)]
    )
    pool.start_threads(2)  # shows up on the workers page
    try:
        with serve_dashboard(url) as base, chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base + "/")
            page.screenshot(path=str(DOCS / "dashboard-overview.png"), full_page=True)
            page.goto(f"{base}/jobs/{failed.id}")
            page.screenshot(path=str(DOCS / "dashboard-job.png"), full_page=True)
    finally:
        pool.finish_threads(10)
        service.close()


if __name__ == "__main__":
    main(sys.argv[1])
