"""A process that prunes (tests/test_retention.py): retries prune_finished while another
process holds the pruning lock, then prints its result.

Usage: python tests/prune_app.py URL BATCH_SIZE
Prints "contending" on the first call that found the lock taken, then "result N".
"""

from __future__ import annotations

import sys
import time

from jobworker import Retention
from jobworker_pg import PostgresService


def main() -> None:
    url, batch = sys.argv[1], int(sys.argv[2])
    retention = Retention(batch_size=batch)
    with PostgresService(url, min_size=1, max_size=1) as service:
        said = False
        deadline = time.monotonic() + 120
        while (deleted := service.prune_finished(retention)) is None:
            if not said:
                print("contending", flush=True)
                said = True
            if time.monotonic() > deadline:
                raise SystemExit("never got the pruning lock")
            time.sleep(0.01)
    print(f"result {deleted}", flush=True)


if __name__ == "__main__":
    main()
