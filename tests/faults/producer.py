"""An enqueueing process for the concurrency scenario: ``python producer.py URL THREADS PER_THREAD TAG``.

Prints "ready", waits for a line on stdin (so that every producer starts at once),
then each thread adds PER_THREAD ``exec`` jobs through one of three paths, by its
number: ``add_job`` one by one, ``add_jobs`` in batches of 4, or ``add_job`` with
``conn=`` in a transaction of the thread's own connection. Each thread also adds
one job in a transaction it rolls back, which must never run. Prints one JSON
line: ids added, ids rolled back, errors, seconds. Exit code 0 without errors.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from typing import Any

import psycopg

import jobqueue
from jobworker_pg import PostgresService


def job(tag: str, thread: int, i: int) -> jobqueue.Job:
    return jobqueue.new_job("exec", f"producer-{tag}", {"tag": tag, "thread": thread, "i": i})


def main() -> None:
    url, threads, per_thread, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    added: list[str] = []
    rolled_back: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    with PostgresService(url, max_size=threads) as svc:

        def produce(n: int) -> None:
            mine: list[str] = []
            try:
                with psycopg.connect(url) as conn:
                    mode = n % 3
                    if mode == 0:
                        for i in range(per_thread):
                            mine.append(str(svc.add_job(job(tag, n, i)).id))
                    elif mode == 1:
                        for start in range(0, per_thread, 4):
                            batch = [job(tag, n, i) for i in range(start, min(start + 4, per_thread))]
                            mine.extend(str(j.id) for j in svc.add_jobs(batch))
                    else:
                        for i in range(per_thread):
                            mine.append(str(svc.add_job(job(tag, n, i), conn=conn).id))
                            conn.commit()
                    phantom = svc.add_job(job(tag, n, -1), conn=conn)
                    conn.rollback()
                with lock:
                    added.extend(mine)
                    rolled_back.append(str(phantom.id))
            except Exception:
                with lock:
                    errors.append(traceback.format_exc())

        workers = [threading.Thread(target=produce, args=(n,)) for n in range(threads)]
        print("ready", flush=True)
        sys.stdin.readline()
        start = time.monotonic()
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        seconds = time.monotonic() - start
    result: dict[str, Any] = {
        "added": added,
        "rolled_back": rolled_back,
        "errors": errors,
        "seconds": round(seconds, 3),
    }
    print(json.dumps(result), flush=True)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
