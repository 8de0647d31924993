"""``jobqueue worker MODULE[:ATTR]``: run the job handlers a module registers.

SIGTERM or SIGINT finishes gracefully: no new claims, in-flight jobs run to
the end (up to ``--shutdown-timeout``) and their outcomes are saved; a second
signal exits at once (jobs still running are retried after ``dead_for``).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import click

import jobworker
from jobworker import Registry, WorkerPool
from jobworker._queue_plan import QueuePlan
from jobworker_pg._init import init_job_queue
from jobworker_pg._processes import ProcessRegistry
from jobworker_pg.cli._context import State, pass_state
from jobworker_pg.cli._health import Health
from jobworker_pg.cli._params import DURATION, DURATION_OR_ZERO, PREFETCH, QUEUE_WEIGHT
from jobworker_pg.cli._progress import Counters, QueueDepth, Reporter, summary
from jobworker_pg.cli._retention import retention_from, retention_options
from jobworker_pg.cli._target import Target

#: How often the main thread looks at signals and refreshes a live line.
_TICK = 0.1
#: How often the live line asks the database for the queue depth.
_DEPTH_EVERY = 2.0


def load_registry(spec: str) -> Registry:
    """Import MODULE (which registers handlers) and return the registry named by ATTR,
    else jobworker's default registry. The current directory is importable, as with
    ``python -m``."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise click.BadParameter(f"{spec!r}: expected MODULE or MODULE:ATTR", param_hint="MODULE[:ATTR]")
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        dotted = module_name.removesuffix(".py").strip("/").replace(os.sep, ".").replace("/", ".")
        raise click.BadParameter(
            f"{module_name!r} is a file path; give the module's dotted name, as for python -m: {dotted}"
            f"{':' + attr if attr else ''} (run from the directory that contains it)",
            param_hint="MODULE[:ATTR]",
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise click.ClickException(
                f"cannot import {module_name!r}: {exc}; run the command from the directory that "
                "contains it, or add that directory to PYTHONPATH"
            ) from None
        traceback.print_exc()
        raise click.ClickException(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        traceback.print_exc()
        raise click.ClickException(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    if not attr:
        return jobworker.default_registry()
    value: object = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise click.ClickException(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(value, Registry):
        raise click.ClickException(
            f"{spec} is a {type(value).__module__}.{type(value).__qualname__}, not a jobworker.Registry"
        )
    return value


def select_job_types(registry: Registry, job_types: tuple[str, ...], spec: str) -> list[str]:
    """Unregister every type but ``job_types`` (all when empty); the types served, sorted."""
    registered = registry.registered_job_types()
    if not registered:
        raise click.ClickException(
            f"{spec} registered no job types: register handlers at import (@jobworker.job(...), "
            "jobworker.register(...)), or pass MODULE:ATTR naming a jobworker.Registry"
        )
    if not job_types:
        return registered
    unknown = sorted(set(job_types) - set(registered))
    if unknown:
        raise click.ClickException(
            f"job type(s) {', '.join(unknown)} not registered by {spec}; registered: {', '.join(registered)}"
        )
    registry.unregister(*(t for t in registered if t not in job_types))
    return registry.registered_job_types()


class _Signals:
    """Records SIGTERM / SIGINT; the handler only appends (safe in any state of the main thread)."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)


def queue_plan(specs: tuple[tuple[str, int | None], ...]) -> list[str] | dict[str, int] | None:
    """The ``queues`` of start_threads from ``--queue`` options: names in strict order, or
    weights when every option has one; a mix is a usage error."""
    if not specs:
        return None
    weights = [weight for _, weight in specs]
    if all(w is None for w in weights):
        plan: list[str] | dict[str, int] = [name for name, _ in specs]
    elif any(w is None for w in weights):
        raise click.UsageError("give every --queue a weight (NAME:WEIGHT) or none (strict order)")
    else:
        plan = {name: weight for name, weight in specs if weight is not None}
        if len(plan) != len(specs):
            raise click.UsageError("--queue names a queue twice")
    try:
        QueuePlan(plan)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return plan


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _option(name: str, *names: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """A worker option that the environment variable JOBQUEUE_<NAME> sets when not given
    (``--dead-for``: ``JOBQUEUE_DEAD_FOR``), as twelve-factor deployments expect."""
    envvar = "JOBQUEUE_" + name.lstrip("-").replace("-", "_").upper()
    return click.option(name, *names, envvar=envvar, show_envvar=True, show_default=True, **kwargs)


def worker_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``jobqueue worker`` (also ``manage.py jobqueue_worker``); each can be
    set by its environment variable too (``JOBQUEUE_THREADS`` ...), shown in ``--help``."""
    options = [
        _option("--threads", "-n", type=click.IntRange(min=1), default=4, help="Worker threads."),
        _option(
            "--job-type",
            "job_types",
            multiple=True,
            metavar="TYPE",
            help="Serve only this job type (repeatable; the variable: types separated by spaces; "
            "default: every registered type).",
        ),
        _option(
            "--queue",
            "queue_specs",
            multiple=True,
            type=QUEUE_WEIGHT,
            metavar="NAME[:WEIGHT]",
            help="Take jobs from this queue (repeatable; the variable: separated by spaces; default: "
            "'default'). Names alone: strict order; all with weights (critical:10 --queue default:1): "
            "threads shared by weight, an empty queue lending its share.",
        ),
        _option(
            "--poll-interval",
            type=DURATION_OR_ZERO,
            default="5s",
            metavar="DURATION",
            help="Also look for jobs this often, besides LISTEN/NOTIFY wake-ups (0: only wake-ups).",
        ),
        _option("--job-timeout", type=DURATION, metavar="DURATION", help="Default handler timeout [15m]."),
        _option(
            "--heartbeat", type=DURATION, metavar="DURATION", help="Heartbeat interval of running jobs [10s]."
        ),
        _option(
            "--dead-for",
            type=DURATION,
            metavar="DURATION",
            help="A running job whose heartbeat is older than this is retried; at least 3 x heartbeat [60s].",
        ),
        _option(
            "--reaper-interval",
            type=DURATION,
            metavar="DURATION",
            help="How often to look for such jobs [heartbeat].",
        ),
        _option(
            "--prefetch",
            type=PREFETCH,
            default="auto",
            metavar="N|auto",
            help="Claim jobs ahead of free threads: 'auto' adapts to the jobs (at most 32, none for "
            "jobs longer than a claim round trip), N fixes it, 0 turns it off. A killed worker's "
            "prefetched jobs count a crash attempt.",
        ),
        _option(
            "--async-concurrency",
            type=click.IntRange(min=1),
            default=jobworker.DEFAULT_ASYNC_CONCURRENCY,
            metavar="N",
            help="How many async def handlers run at once, on the worker's event loop.",
        ),
        _option(
            "--shutdown-timeout",
            type=DURATION_OR_ZERO,
            default="30s",
            metavar="DURATION",
            help="On SIGTERM/SIGINT, wait this long for running jobs to finish.",
        ),
        _option(
            "--health-port",
            type=click.IntRange(min=0, max=65535),
            metavar="PORT",
            help="Serve a health check on this port (GET: 200 ok, 503 when the database has "
            "been unreachable longer than --unhealthy-after).",
        ),
        _option(
            "--health-file",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="PATH",
            help="Keep this file's modification time fresh (each second) while healthy; removed when not.",
        ),
        _option(
            "--unhealthy-after",
            type=DURATION,
            default="60s",
            metavar="DURATION",
            help="How long without the database makes the worker unhealthy.",
        ),
        _option(
            "--metrics-port",
            type=click.IntRange(1, 65535),
            metavar="PORT",
            help="Serve this worker's Prometheus metrics on http://METRICS_HOST:PORT/metrics "
            "(needs the metrics extra).",
        ),
        _option("--metrics-host", default="127.0.0.1", help="Address for --metrics-port."),
        _option(
            "--stats-interval",
            type=DURATION,
            default="10s",
            metavar="DURATION",
            help="How often to print a summary line when stderr is not a terminal.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return retention_options(command)


@click.command(context_settings={"show_default": True})
@click.argument("app", metavar="MODULE[:ATTR]")
@worker_options
@pass_state
def worker(state: State, /, app: str, **options: Any) -> None:
    """Run the job handlers that MODULE registers when imported.

    MODULE is imported (from the current directory too); its handlers are those
    registered with @jobworker.job / jobworker.register, or those of the
    jobworker.Registry named by ATTR (e.g. myapp.jobs:registry).

    SIGTERM or Ctrl-C stops taking jobs and waits up to --shutdown-timeout for
    running ones, then exits 0; a second signal exits at once.
    """
    target = state.target()
    state.connect().close()  # a quick, clear error if the database is unreachable
    registry = load_registry(app)
    run_worker(target, registry, app, **options)


def run_worker(
    target: Target,
    registry: Registry,
    spec: str,
    *,
    threads: int,
    job_types: tuple[str, ...],
    queue_specs: tuple[tuple[str, int | None], ...],
    poll_interval: timedelta,
    job_timeout: timedelta | None,
    heartbeat: timedelta | None,
    dead_for: timedelta | None,
    reaper_interval: timedelta | None,
    prefetch: int | Literal["auto"],
    async_concurrency: int,
    shutdown_timeout: timedelta,
    health_port: int | None,
    health_file: Path | None,
    unhealthy_after: timedelta,
    metrics_port: int | None,
    metrics_host: str,
    stats_interval: timedelta,
    **retention: Any,
) -> None:
    """Serve ``registry``'s job types on ``target`` until SIGTERM/SIGINT (the body of the
    worker commands; ``spec`` names what registered them, for errors)."""
    served = select_job_types(registry, job_types, spec)
    queues = queue_plan(queue_specs)
    pool = (
        jobworker.default_pool()
        if registry is jobworker.default_registry()
        else WorkerPool(registry=registry)
    )
    try:
        pool.configure(
            job_timeout=job_timeout,
            heartbeat_interval=heartbeat,
            dead_for=dead_for,
            reaper_interval=reaper_interval,
            prefetch=prefetch,
            retention=retention_from(retention, pool.settings.retention),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    if metrics_port is not None:
        _serve_metrics(pool, metrics_host, metrics_port)
    registry_observer = ProcessRegistry(target.url)
    pool.add_observer(registry_observer)

    counters = Counters()
    registry.add_after_job_hook(counters.after_job)
    reporter = Reporter(stats_interval.total_seconds())
    reporter.route_logging()
    signals = _Signals()
    signals.install()

    service = init_job_queue(target.url)
    depth = QueueDepth(target, _DEPTH_EVERY if reporter.live else stats_interval.total_seconds() / 2, served)
    health = Health(
        lambda: depth.failing_for, unhealthy_after.total_seconds(), port=health_port, file=health_file
    )
    try:
        pool.set_database(service)
        if poll_interval > timedelta(0):
            pool.start_polling_available_jobs(poll_interval)
        pool.start_threads(threads, queues=queues, async_concurrency=async_concurrency)
        has_async = any(h.is_async for h in registry.handlers().values())
        reporter.message(
            f"jobqueue worker (pid {os.getpid()}): {threads} threads"
            + (f" + {async_concurrency} async" if has_async else "")
            + f" on {target.masked}, "
            f"queues: {QueuePlan(queues).describe()}, job types: {', '.join(served)}"
            + (f", health check on port {health.port}" if health.port is not None else "")
        )
        while not signals.received:
            reporter.show(summary(counters, depth.get()))
            health.tick()
            time.sleep(_TICK)
        finished = _finish(pool, signals, shutdown_timeout, reporter, counters)
    finally:
        pool.remove_observer(registry_observer)
        health.close()
        depth.close()
        service.close()
    reporter.show(summary(counters, None), force=True)
    reporter.finish()
    if not finished:
        raise click.ClickException(
            f"running jobs did not finish within {shutdown_timeout.total_seconds():g} s; "
            "they will be retried once their heartbeat is older than dead_for"
        )
    click.echo("worker stopped cleanly", err=True)


def _serve_metrics(pool: WorkerPool, host: str, port: int) -> None:
    try:
        from jobworker_pg.metrics import WorkerMetrics, serve_metrics
    except ImportError as exc:
        raise click.ClickException(
            f"--metrics-port needs prometheus-client: pip install 'pg-jobqueue[metrics]' ({exc})"
        ) from None
    pool.add_observer(WorkerMetrics())
    try:
        serve_metrics(port, host)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {host}:{port}: {exc}") from None


def _finish(
    pool: WorkerPool, signals: _Signals, timeout: timedelta, reporter: Reporter, counters: Counters
) -> bool:
    """Finish the pool on a helper thread, so that a second signal can still end the process."""
    name = signal.Signals(signals.received[0]).name
    reporter.message(
        f"{name}: finishing running jobs (up to {timeout.total_seconds():g} s); send it again to stop at once"
    )
    result: list[bool] = []
    finisher = threading.Thread(
        target=lambda: result.append(pool.finish_threads(timeout)), name="jobqueue-finish", daemon=True
    )
    finisher.start()
    handled = len(signals.received)
    while finisher.is_alive():
        finisher.join(_TICK)
        reporter.show(summary(counters, None))
        if len(signals.received) > handled:
            reporter.show(summary(counters, None), force=True)
            reporter.finish()
            click.echo("second signal: exiting now; running jobs will be retried after dead_for", err=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + signals.received[-1])
    return bool(result and result[0])
