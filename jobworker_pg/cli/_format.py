"""Plain-text tables and job descriptions for the terminal."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jobqueue import Job, QueueInfo, StateCounts, Status

STATE_COLUMNS = tuple(StateCounts.model_fields)
_ERROR_WIDTH = 60


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[int] = ()) -> str:
    """A table with a header rule; columns whose index is in ``right`` are right-aligned."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def status_table(status: Status) -> str:
    """Job counts by type and state, with a total row and the bundle counts."""
    headers = ["type", *STATE_COLUMNS, "total"]
    rows: list[list[Any]] = [
        [job_type, *(getattr(counts, f) for f in STATE_COLUMNS), counts.total]
        for job_type, counts in sorted(status.by_type.items())
    ]
    rows.append(["TOTAL", *(getattr(status, f) for f in STATE_COLUMNS), status.total])
    text = table(headers, rows, right=range(1, len(headers)))
    note = (
        "\n(succeeded, failed, cancelled: estimates from a sample of a big table)" if status.estimated else ""
    )
    return f"{text}\n\nbundles: {status.num_bundles} ({status.num_bundles_stopped} completed){note}"


def jobs_table(jobs: Sequence[Job]) -> str:
    """One line per job: id, type, queue, state, attempts, created, last error."""
    rows = [
        [
            job.id,
            job.type,
            job.queue,
            job.state.value,
            f"{job.attempt}/{job.max_retry_count + 1}",
            _time(job.created_at),
            _shorten(job.error_msg or "", _ERROR_WIDTH),
        ]
        for job in jobs
    ]
    return table(["id", "type", "queue", "state", "attempts", "created", "error"], rows)


def job_json(job: Job) -> dict[str, Any]:
    """A job as a JSON object, with its derived state."""
    data = job.model_dump(mode="json")
    data["state"] = job.state.value
    return data


def queues_table(queues: Sequence[QueueInfo]) -> str:
    """One line per queue: its rules and its waiting and running jobs."""
    rows = [
        [
            info.name,
            "paused" if info.paused else "active",
            info.concurrency,
            info.per_key_concurrency,
            info.rate_limit,
            info.waiting,
            info.running,
        ]
        for info in queues
    ]
    headers = ["queue", "state", "concurrency", "per key", "rate limit", "waiting", "running"]
    return table(headers, rows, right=(2, 3, 5, 6))


def queue_json(info: QueueInfo) -> dict[str, Any]:
    """A queue as a JSON object (the rate limit's window in seconds)."""
    rate = info.rate_limit
    return {
        "name": info.name,
        "paused": info.paused,
        "concurrency": info.concurrency,
        "per_key_concurrency": info.per_key_concurrency,
        "rate_limit": None
        if rate is None
        else {"count": rate.count, "per_seconds": rate.per.total_seconds()},
        "waiting": info.waiting,
        "running": info.running,
    }


def dumps(value: Any) -> str:
    """Indented JSON."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def job_details(job: Job) -> str:
    """Every field of a job, one per line; payload, result and error history as JSON."""
    fields: list[tuple[str, Any]] = [
        ("id", job.id),
        ("type", job.type),
        ("queue", job.queue),
        ("state", job.state.value),
        ("origin", job.origin),
        ("concurrency_key", job.concurrency_key),
        ("timeout", job.timeout),
        ("bundle_id", job.bundle_id),
        ("priority", job.priority),
        ("attempts", f"{job.attempt} of {job.max_retry_count + 1}"),
        ("created_at", _time(job.created_at)),
        ("start_at", _time(job.start_at)),
        ("started_at", _time(job.started_at)),
        ("worker_alive_at", _time(job.worker_alive_at)),
        ("stopped_at", _time(job.stopped_at)),
        ("cancelled_at", _time(job.cancelled_at)),
        ("updated_at", _time(job.updated_at)),
        ("error_msg", job.error_msg),
    ]
    width = max(len(name) for name, _ in fields) + 1
    lines = [f"{name + ':':<{width}} {_cell(value)}" for name, value in fields if value not in (None, "")]
    lines.append(f"{'payload:':<{width}} {json.dumps(job.payload, ensure_ascii=False)}")
    if job.meta is not None:
        lines.append(f"{'meta:':<{width}} {json.dumps(job.meta, ensure_ascii=False)}")
    if job.result is not None:
        lines.append(f"{'result:':<{width}} {json.dumps(job.result, ensure_ascii=False)}")
    if job.errors:
        lines.append("errors:")
        lines.extend(
            f"  attempt {e.attempt} at {_time(e.at)}: {e.type + ': ' if e.type else ''}{e.message}"
            for e in job.errors
        )
    traceback = job.error_data.get("traceback") if isinstance(job.error_data, dict) else None
    if isinstance(traceback, str) and traceback.strip():
        lines.append("traceback of the last error:")
        lines.extend("  " + line for line in traceback.rstrip().splitlines())
    return "\n".join(lines)


def _time(value: datetime | None) -> str:
    """Local time with its zone (``2026-12-01 10:15:00 CET``): a time without one is ambiguous."""
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _time(value)
    return str(value)


def _shorten(text: str, width: int) -> str:
    text = text.splitlines()[0] if text else ""
    return text if len(text) <= width else text[: width - 1] + "…"
