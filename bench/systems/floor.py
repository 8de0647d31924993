"""The floor: the strongest raw-SQL pattern we know, straight psycopg, no library.

A narrow table with a status column and a partial index on pending rows; a
statement-level insert trigger sends one NOTIFY per statement (as pg-jobqueue
does). Each of the c worker threads has its own connection and loops: claim a
batch with ``FOR UPDATE SKIP LOCKED`` (one statement, committed), run it,
complete the whole batch in one UPDATE (which also counts bundles and enqueues
a bundle-completion job when one is full). One listener connection wakes idle
threads. Enqueue batches use COPY. Finished rows are kept (status 2), as
pg-jobqueue keeps them.

``floor-1stmt`` (:mod:`bench.systems.floor_1stmt`) is the older floor: one
thread, one statement per round trip that completes and claims together.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from bench.systems import WorkResult, WorkSpec
from bench.systems._common import BUNDLE, WAIT_TIMEOUT, Counter
from bench.systems.floor_1stmt import Floor1Stmt, count_rows

#: Jobs one thread claims at a time.
BATCH = 100

CLAIM = """
with next as (
    select id from floor_job where status = 0 order by id limit %(limit)s for update skip locked
)
update floor_job j set status = 1 from next where j.id = next.id
returning j.id, j.type, j.payload
"""

COMPLETE = """
with done as (
    update floor_job set status = 2 where id = any(%(done)s::bigint[]) returning bundle_id
), counts as (
    select bundle_id, count(*) as n from done where bundle_id is not null group by bundle_id
), full_bundles as (
    update floor_bundle b set done = b.done + c.n from counts c
    where b.id = c.bundle_id returning b.id, b.done = b.num as complete
)
insert into floor_job (type, payload)
select %(bundle_type)s, jsonb_build_object('bundle', id) from full_bundles where complete
"""


class _Wakeups:
    """One LISTEN connection; idle threads wait for the next notification (or a second)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._cond = threading.Condition()
        self.generation = 0
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="floor-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._listening.wait(10)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def wait(self, seen: int, timeout: float) -> None:
        with self._cond:
            if self.generation == seen:
                self._cond.wait(timeout)

    def _run(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as listen:
            listen.execute("listen floor")
            self._listening.set()
            while not self._stop.is_set():
                for _ in listen.notifies(timeout=0.2, stop_after=1):
                    with self._cond:
                        self.generation += 1
                        self._cond.notify_all()


#: The most connections (threads) the floor opens.
MAX_CONNECTIONS = 32


class Floor(Floor1Stmt):
    name = "floor"

    def work(self, url: str, spec: WorkSpec, ready: Any) -> WorkResult:
        counter = Counter(spec.target)
        wakeups = _Wakeups(url)
        wakeups.start()
        errors: list[BaseException] = []
        finished_at: list[float] = []  # when a thread saved a batch after the target was reached
        deadline = time.monotonic() + WAIT_TIMEOUT
        limit = BATCH if spec.kind != "latency" else 1

        def thread_main() -> None:
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    while not counter.done.is_set():
                        seen = wakeups.generation
                        rows = conn.execute(CLAIM, {"limit": limit}).fetchall()
                        if not rows:
                            if time.monotonic() > deadline:
                                raise TimeoutError("target not reached")
                            wakeups.wait(seen, 1.0)
                            continue
                        count_rows(counter, spec, rows)
                        conn.execute(COMPLETE, {"done": [r[0] for r in rows], "bundle_type": BUNDLE})
                        if counter.done.is_set():
                            finished_at.append(time.perf_counter())
            except BaseException as exc:  # reported by the driver thread
                errors.append(exc)
                counter.done.set()

        # One connection per thread, at most MAX_CONNECTIONS (W3a100's 100 would pass the server's
        # max_connections): a thread's batch of 100 no-op jobs keeps it busy anyway.
        width = min(spec.concurrency, MAX_CONNECTIONS)
        threads = [threading.Thread(target=thread_main, daemon=True) for _ in range(width)]
        if spec.kind == "latency":
            for t in threads:
                t.start()
            time.sleep(0.5)  # every thread made its first (empty) claim
            ready()
            t0 = time.perf_counter()
        else:
            ready()
            t0 = time.perf_counter()
            for t in threads:
                t.start()
        for t in threads:
            t.join()  # idle threads leave within a second; the time ends at the last saved batch
        seconds = max(finished_at, default=time.perf_counter()) - t0
        wakeups.stop()
        if errors:
            raise errors[0]
        return WorkResult(seconds, counter.calls, counter.job_calls, counter.latencies)


SYSTEM = Floor()
