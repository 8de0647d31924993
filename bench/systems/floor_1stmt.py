"""The one-statement floor (the second floor, ``floor-1stmt``): straight psycopg, no library.

One table with a status column and a partial index on pending rows; a
statement-level insert trigger sends one NOTIFY per statement (as pg-jobqueue
does). A worker round trip is ONE statement: it completes the previous batch
(and counts bundles, enqueuing a bundle-completion job when one is full) and
claims the next batch with FOR UPDATE SKIP LOCKED. Enqueue batches use COPY.
Finished rows are kept (status 2), as pg-jobqueue keeps them.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.systems import WorkResult, WorkSpec
from bench.systems._common import BUNDLE, NOOP, WAIT_TIMEOUT, Counter

SCHEMA = """
create table floor_bundle (id bigserial primary key, num int not null, done int not null default 0);
create table floor_job (
    id bigserial primary key,
    type text not null,
    payload jsonb not null,
    bundle_id bigint references floor_bundle (id),
    status smallint not null default 0,          -- 0 pending, 1 running, 2 done
    created_at timestamptz not null default now()
);
create index floor_job_pending on floor_job (id) where status = 0;
create function floor_notify() returns trigger language plpgsql as $$
begin perform pg_notify('floor', ''); return null; end $$;
create trigger floor_inserted after insert on floor_job
    for each statement execute function floor_notify();
"""

# Complete the previous batch (bundle counters, completion jobs) and claim the next: one round trip.
STEP = """
with done as (
    update floor_job set status = 2 where id = any(%(done)s::bigint[]) returning bundle_id
), counts as (
    select bundle_id, count(*) as n from done where bundle_id is not null group by bundle_id
), full_bundles as (
    update floor_bundle b set done = b.done + c.n from counts c
    where b.id = c.bundle_id returning b.id, b.done = b.num as complete
), completion as (
    insert into floor_job (type, payload)
    select %(bundle_type)s, jsonb_build_object('bundle', id) from full_bundles where complete
), next as (
    select id from floor_job where status = 0 order by id limit %(limit)s for update skip locked
)
update floor_job j set status = 1 from next where j.id = next.id
returning j.id, j.type, j.payload
"""


def count_rows(counter: Counter, spec: WorkSpec, rows: list[tuple[Any, str, Any]]) -> None:
    """Run the claimed (id, type, payload) rows' no-op handlers: count them for the workload."""
    for _id, job_type, payload in rows:
        if spec.kind == "latency":
            counter.latency(payload["t"])
        elif job_type == BUNDLE or spec.kind != "bundles":
            counter.hit()
        else:
            counter.job()


class Floor1Stmt:
    name = "floor-1stmt"
    supports_bundles = True
    why_no_bundles = ""

    def install(self, url: str) -> None:
        with psycopg.connect(url) as conn:
            conn.execute(SCHEMA.encode())

    def enqueue_each(self, url: str, n: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            for i in range(n):
                conn.execute("insert into floor_job (type, payload) values (%s, %s)", (NOOP, Jsonb({"i": i})))

    def enqueue_batches(self, url: str, n: int, batch: int) -> None:
        with psycopg.connect(url) as conn:
            for start in range(0, n, batch):
                with conn.cursor().copy("copy floor_job (type, payload) from stdin") as copy:
                    for i in range(start, min(n, start + batch)):
                        copy.write_row((NOOP, json.dumps({"i": i})))
                conn.commit()

    def preload(self, url: str, pending: int, finished: int) -> None:
        with psycopg.connect(url) as conn:
            for count, status in ((finished, 2), (pending, 0)):
                if count:
                    conn.execute(
                        """insert into floor_job (type, payload, status)
                           select %s, jsonb_build_object('i', g), %s from generate_series(1, %s) g""",
                        (NOOP, status, count),
                    )
            conn.commit()
            conn.autocommit = True
            conn.execute("vacuum analyze floor_job")
            conn.execute("checkpoint")  # the load's writes are not the workload's

    def preload_bundles(self, url: str, bundles: int, size: int) -> None:
        with psycopg.connect(url) as conn:
            for _ in range(bundles):
                row = conn.execute(
                    "insert into floor_bundle (num) values (%s) returning id", (size,)
                ).fetchone()
                assert row is not None
                with conn.cursor().copy("copy floor_job (type, payload, bundle_id) from stdin") as copy:
                    for i in range(size):
                        copy.write_row((NOOP, json.dumps({"i": i}), row[0]))
                conn.commit()

    def latency_producer(self, url: str, n: int, interval: float) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            next_at = time.monotonic()
            for _ in range(n):
                conn.execute(
                    "insert into floor_job (type, payload) values (%s, %s)",
                    (NOOP, Jsonb({"t": time.monotonic()})),
                )
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))

    def count_succeeded(self, url: str) -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "select count(*) from floor_job where status = 2 and type = %s", (NOOP,)
            ).fetchone()
        return int(row[0]) if row else 0

    def work(self, url: str, spec: WorkSpec, ready: Any) -> WorkResult:
        counter = Counter(spec.target)
        with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(url, autocommit=True) as listen:
            listen.execute("listen floor")
            params: dict[str, Any] = {"done": [], "limit": spec.concurrency, "bundle_type": BUNDLE}
            deadline = time.monotonic() + WAIT_TIMEOUT
            ready()
            t0 = time.perf_counter()
            while True:
                rows = conn.execute(STEP, params).fetchall()
                if counter.done.is_set():  # this round only saved the last batch
                    break
                count_rows(counter, spec, rows)
                params["done"] = [r[0] for r in rows]
                if counter.done.is_set():
                    params["limit"] = 0
                    continue
                if not rows:
                    if time.monotonic() > deadline:
                        raise TimeoutError("target not reached")
                    for _ in listen.notifies(timeout=1.0, stop_after=1):
                        pass
            seconds = time.perf_counter() - t0
        return WorkResult(seconds, counter.calls, counter.job_calls, counter.latencies)


SYSTEM = Floor1Stmt()
