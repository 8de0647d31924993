"""``python -m bench``: run every system through the workloads; print, save JSON and a chart."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import platform
import sys
from pathlib import Path

from bench import report
from bench.db import server, server_version
from bench.systems import DEFAULT_SYSTEMS, MODULES, load
from bench.systems.pgjobqueue import DEFAULT_PREFETCH, PREFETCH_ENV
from bench.workloads import WORKLOADS, Result, Sizes, run

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--database-url", help="admin URL of a server to use (default: a throwaway embedded one)")
    p.add_argument("--quick", action="store_true", help="sizes / 10, W5 at 100k rows")
    p.add_argument(
        "--systems", default=",".join(DEFAULT_SYSTEMS), help=f"comma-separated, of {','.join(MODULES)}"
    )
    p.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, of {','.join(WORKLOADS)}",
    )
    p.add_argument(
        "--scale",
        type=int,
        help="rows of the big-table workloads (W5done, W5backlog, W4done; default 1,000,000, quick 100,000)",
    )
    p.add_argument("--chart", type=Path, help="also write the chart here (e.g. docs/performance.png)")
    p.add_argument(
        "--prefetch",
        type=int,
        default=DEFAULT_PREFETCH,
        help=f"the pg-jobqueue-tuned row's prefetch (default {DEFAULT_PREFETCH})",
    )
    args = p.parse_args(argv)
    os.environ[PREFETCH_ENV] = str(args.prefetch)  # read by the spawned worker processes
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("jobworker", "jobworker_pg", "pgqueuer", "procrastinate", "psycopg"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    systems = [s for s in args.systems.split(",") if s]
    workloads = [w for w in args.workloads.split(",") if w]
    for s in systems:
        if s not in MODULES:
            p.error(f"unknown system {s}")
    for w in workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w}")
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.scale is not None:
        if args.scale < 0:
            p.error("--scale must be 0 or more")
        sizes = dataclasses.replace(sizes, scale=args.scale)
    results: list[Result] = []
    with server(args.database_url) as admin_url:
        version = server_version(admin_url)
        for w in workloads:
            for s in systems:
                logging.info("running %s on %s", w, s)
                r = run(load(s), w, admin_url, sizes)
                logging.info("  -> %s %s", report._fmt(r), r.checked or r.note)
                results.append(r)
    meta = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "pg-jobqueue-tuned prefetch": args.prefetch,
        "load average before": os.getloadavg(),
        "sizes": dataclasses.asdict(sizes),
        "postgresql": version,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
    }
    text = report.table(results, systems, workloads)
    print("\n" + text + "\n")
    cpu = report.cpu_table(results, systems, workloads)
    if cpu:
        print(cpu + "\n")
    print("\n".join(report.targets(results)))
    for r in results:
        if not r.ok or r.note:
            print(f"note: {r.system} {r.workload}: {r.note or r.checked}")
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    report.write_json(RESULTS / f"{stamp}.json", results, meta)
    mode = "quick" if args.quick else "full"
    title = f"pg-jobqueue bench ({mode}), PostgreSQL {version}, {meta['machine']}"
    report.chart(RESULTS / f"{stamp}.png", results, systems, workloads, title)
    if args.chart:
        report.chart(args.chart, results, systems, workloads, title)
    print(f"\nwrote {RESULTS / stamp}.json and .png")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
