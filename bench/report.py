"""The results table (with ratios against the peers of the same run), JSON and PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.workloads import LATENCY_WORKLOADS, Result

US = "pg-jobqueue"
TUNED = "pg-jobqueue-tuned"


def _value(r: Result | None) -> float | None:
    if r is None or not r.ok:
        return None
    if r.workload in LATENCY_WORKLOADS:
        return r.latency_ms.get("p50")
    return r.rate


def _fmt(r: Result | None) -> str:
    if r is None:
        return "-"
    if r.note.startswith("n/a"):
        return "n/a"
    if not r.ok:
        return "FAILED"
    if r.workload in LATENCY_WORKLOADS:
        lm = r.latency_ms
        return f"{lm['p50']:.1f}/{lm['p95']:.1f}/{lm['p99']:.1f}/{lm['max']:.1f} ms"
    unit = "bundles/s" if r.workload == "W6" else "jobs/s"
    return f"{r.rate:,.0f} {unit}"


def _ratio(us: Result | None, peer: Result | None) -> str:
    a, b = _value(us), _value(peer)
    if a is None or b is None or b == 0:
        return "-"
    if us is not None and us.workload in LATENCY_WORKLOADS:
        return f"{a - b:+.1f} ms"
    return f"{a / b:.2f}x"


def table(results: list[Result], systems: list[str], workloads: list[str]) -> str:
    """Markdown table: one row per workload, a column per system, then the ratios of our
    rows (default, tuned) to each peer."""
    by = {(r.system, r.workload): r for r in results}
    ours = [s for s in (US, TUNED) if s in systems]
    peers = [s for s in systems if s not in ours]
    pairs = [(o, p) for o in ours for p in peers]
    head = ["workload", *systems] + [f"{o} / {p}" for o, p in pairs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in workloads:
        cells = [w, *(_fmt(by.get((s, w))) for s in systems)]
        cells += [_ratio(by.get((o, w)), by.get((p, w))) for o, p in pairs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(results: list[Result], systems: list[str], workloads: list[str]) -> str:
    """Markdown table of the worker process's CPU per job (all its threads), drains only."""
    by = {(r.system, r.workload): r for r in results}
    rows = [w for w in workloads if any(by.get((s, w)) and by[(s, w)].cpu_us_per_job for s in systems)]
    if not rows:
        return ""
    lines = ["| client CPU per job | " + " | ".join(systems) + " |", "|" + "---|" * (len(systems) + 1)]
    for w in rows:
        cells = []
        for s in systems:
            r = by.get((s, w))
            cells.append(f"{r.cpu_us_per_job:.0f} µs" if r and r.ok and r.cpu_us_per_job else "-")
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(results: list[Result]) -> list[str]:
    """The issue's targets (issue 16), each with the measured figure and met / NOT met."""
    by = {(r.system, r.workload): r for r in results}

    def rate(s: str, w: str) -> float | None:
        return _value(by.get((s, w))) if not w.startswith("W4") else None

    out: list[str] = []

    def check(label: str, ours: float | None, peer: float | None, factor: float) -> None:
        if ours is None or peer is None:
            out.append(f"- {label}: not measured")
            return
        ratio = ours / peer
        out.append(f"- {label}: {ratio:.2f}x (target {factor}x) -> {'met' if ratio >= factor else 'NOT met'}")

    check("W3 c=16 defaults vs pgqueuer", rate(US, "W3c16"), rate("pgqueuer", "W3c16"), 3.0)
    check("W3 c=16 defaults vs floor", rate(US, "W3c16"), rate("floor", "W3c16"), 0.3)
    check("W3 c=1 defaults vs pgqueuer", rate(US, "W3c1"), rate("pgqueuer", "W3c1"), 10.0)
    check("W3 c=16 tuned vs floor", rate(TUNED, "W3c16"), rate("floor", "W3c16"), 0.5)
    check("W3 async c=16 defaults vs pgqueuer", rate(US, "W3a16"), rate("pgqueuer", "W3a16"), 2.0)
    check("W3 async c=100 defaults vs pgqueuer", rate(US, "W3a100"), rate("pgqueuer", "W3a100"), 2.0)
    check("W1 defaults vs floor", rate(US, "W1"), rate("floor", "W1"), 0.9)
    check("W2 defaults vs floor", rate(US, "W2"), rate("floor", "W2"), 0.8)
    check("W5 (finished rows) vs W3 c=16, defaults", rate(US, "W5done"), rate(US, "W3c16"), 0.8)
    check("W5 (backlog) vs W3 c=16, defaults", rate(US, "W5backlog"), rate(US, "W3c16"), 0.8)
    check("W1 with unique keys vs without", rate(f"{US}-unique", "W1"), rate(US, "W1"), 0.85)
    check("W2 with unique keys vs without", rate(f"{US}-unique", "W2"), rate(US, "W2"), 0.85)
    us4, fl4, pq4 = by.get((US, "W4")), by.get(("floor", "W4")), by.get(("pgqueuer", "W4"))
    if us4 and fl4 and us4.ok and fl4.ok:
        d = us4.latency_ms["p50"] - fl4.latency_ms["p50"]
        out.append(f"- W4 p50 within 0.5 ms of floor: {d:+.2f} ms -> {'met' if d <= 0.5 else 'NOT met'}")
    else:
        out.append("- W4 p50 within 0.5 ms of floor: not measured")
    if us4 and pq4 and us4.ok and pq4.ok:
        a, b = us4.latency_ms["p99"], pq4.latency_ms["p99"]
        out.append(f"- W4 p99 below pgqueuer's: {a:.1f} vs {b:.1f} ms -> {'met' if a < b else 'NOT met'}")
    else:
        out.append("- W4 p99 below pgqueuer's: not measured")
    us4done = by.get((US, "W4done"))
    if us4 and us4done and us4.ok and us4done.ok:
        a, b = us4done.latency_ms["p50"], us4.latency_ms["p50"]
        met = "met" if a <= b * 1.2 else "NOT met"
        out.append(f"- W4 p50 with the finished rows within 20 % of W4: {a:.1f} vs {b:.1f} ms -> {met}")
    for w in ("W3c1", "W3c16"):
        r = by.get((US, w))
        if r and r.ok and r.cpu_us_per_job:
            met = "met" if r.cpu_us_per_job < 50 else "NOT met"
            figure = f"{r.cpu_us_per_job:.1f} µs (target < 50)"
            out.append(f"- client CPU per job {w}, defaults: {figure} -> {met}")
        else:
            out.append(f"- client CPU per job {w}, defaults: not measured")
    return out


def write_json(path: Path, results: list[Result], meta: dict[str, Any]) -> None:
    path.write_text(json.dumps({"meta": meta, "results": [r.as_dict() for r in results]}, indent=2))


def chart(path: Path, results: list[Result], systems: list[str], workloads: list[str], title: str) -> None:
    """Throughput per workload relative to the floor (1.0), W4 as p50 and p99 latency in ms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r.system, r.workload): r for r in results}
    tput = [w for w in workloads if w not in LATENCY_WORKLOADS]
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [max(len(tput), 1) * 1.6, 2]}
    )
    width = 0.8 / max(len(systems), 1)
    for i, s in enumerate(systems):
        xs, ys = [], []
        for j, w in enumerate(tput):
            r, base = by.get((s, w)), by.get((US if "floor" not in systems else "floor", w))
            v, b = _value(r), _value(base)
            if v is not None and b:
                xs.append(j + i * width)
                ys.append(v / b)
        ax1.bar(xs, ys, width, label=s)
    ax1.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(tput))], tput)
    ax1.set_ylabel("throughput relative to floor (floor = 1)" if "floor" in systems else f"relative to {US}")
    ax1.axhline(1.0, color="grey", linewidth=0.8)
    ax1.set_yscale("log")  # ratios from 0.05x to 50x: a linear axis flattens all but the largest
    ax1.legend(fontsize=8)
    ax1.set_title("throughput (higher is better)")
    for i, s in enumerate(systems):
        r = by.get((s, "W4"))
        if r is not None and r.ok and r.latency_ms:
            lm = r.latency_ms
            ax2.bar([0 + i * width, 1 + i * width], [lm["p50"], lm["p99"]], width, label=s)
    ax2.set_xticks([width * (len(systems) - 1) / 2, 1 + width * (len(systems) - 1) / 2], ["p50", "p99"])
    ax2.set_ylabel("ms")
    ax2.set_yscale("log")
    ax2.set_title("W4 latency\n(lower is better)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
