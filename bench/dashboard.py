"""Dashboard at scale: server-side time of every page with 1,000,000 finished and 100,000
waiting jobs (docs/dashboard.md). Usage: python -m bench.dashboard POSTGRES_URL

Loads the rows with one generate_series statement into the database at the URL (schema
installed first), then requests each page through a real server and reports the median and
worst of several requests, measured in the server (around the ASGI call).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import httpx
import psycopg

from jobworker_pg import install_schema
from jobworker_pg.dashboard import create_app

FINISHED = 1_000_000
WAITING = 100_000
REPEAT = 7

LOAD = """
insert into worker.job (id, type, payload, origin, created_at, updated_at, started_at, stopped_at,
                        error_msg, attempt)
select gen_random_uuid(), 'type-' || (i %% 20), jsonb_build_object('n', i), 'bench',
       now() - make_interval(secs => i * 0.6), now(),
       now() - make_interval(secs => i * 0.6), now() - make_interval(secs => i * 0.6 - 0.1),
       case when i %% 50 = 0 then 'boom ' || i end, 1
from generate_series(1, %(finished)s) as i;
insert into worker.job (id, type, payload, origin)
select gen_random_uuid(), 'type-' || (i %% 20), jsonb_build_object('n', i), 'bench'
from generate_series(1, %(waiting)s) as i;
"""


class Timed:
    """ASGI middleware recording the server-side time of each request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.times: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        await self.app(scope, receive, send)
        self.times.append(time.perf_counter() - started)


def main(url: str) -> None:
    install_schema(url)
    with psycopg.connect(url, autocommit=True) as conn:
        (count,) = conn.execute("select count(*) from worker.job").fetchone() or (0,)
        if count < FINISHED + WAITING:
            started = time.perf_counter()
            for statement in LOAD.split(";\n"):
                if statement.strip():
                    conn.execute(statement, {"finished": FINISHED, "waiting": WAITING})  # type: ignore[call-overload]
            conn.execute("vacuum analyze worker.job")
            seconds = time.perf_counter() - started
            print(f"loaded {FINISHED:,} finished + {WAITING:,} waiting jobs in {seconds:.0f} s")
        job_id = conn.execute("select id from worker.job where error_msg is not null limit 1").fetchone()[0]  # type: ignore[index]
    sys.path.insert(0, "tests")
    from dashboard_server import serve_asgi

    timed = Timed(create_app(url))
    pages = {
        "overview": "/",
        "overview (live fragment)": "/overview/live",
        "jobs (all)": "/jobs",
        "jobs (waiting)": "/jobs?state=waiting",
        "jobs (failed)": "/jobs?state=failed",
        "jobs (succeeded, one type)": "/jobs?state=succeeded&type=type-3",
        "job detail": f"/jobs/{job_id}",
        "bundles": "/bundles",
        "workers": "/workers",
        "/metrics": "/metrics",
    }
    print("| page | median ms | worst ms |\n|---|---:|---:|")
    with serve_asgi(timed) as base, httpx.Client(base_url=base, timeout=60) as client:
        for name, path in pages.items():
            timed.times.clear()
            for _ in range(REPEAT):
                assert client.get(path).status_code == 200, path
            ms = [t * 1000 for t in timed.times]
            print(f"| {name} | {statistics.median(ms):.0f} | {max(ms):.0f} |")
    timed.app.state.dashboard.close()


if __name__ == "__main__":
    main(sys.argv[1])
