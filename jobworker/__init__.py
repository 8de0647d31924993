"""pg-jobqueue worker runtime: register job handlers, run them on a thread pool.

Quickstart (a worker process; ``DATABASE_URL`` points at PostgreSQL)::

    import jobqueue
    import jobworker
    from pydantic import BaseModel
    from jobworker_pg import init_job_queue

    class SendEmail(BaseModel):
        to: str

    @jobworker.job()                                # job type "__main__.SendEmail"
    def send_email(payload: SendEmail) -> dict[str, str]:
        return {"sent_to": payload.to}              # stored as the job's result

    init_job_queue()                                # hands the database to jobworker
    jobworker.start_threads(4)
    jobqueue.add(jobqueue.new_job(jobqueue.job_type_of(SendEmail), "docs", SendEmail(to="a@example.com")))
    ...
    jobworker.finish_threads()                      # finish in-flight jobs, save outcomes

Without a database, :func:`do_job` runs a job inline (handy in tests):

>>> import jobqueue, jobworker
>>> jobworker.register("demo.add", lambda job: sum(job.payload))
>>> jobworker.do_job(jobqueue.new_job("demo.add", "docs", [1, 2, 3])).result
6
>>> jobworker.unregister("demo.add")

Handlers run with at-least-once semantics: an attempt counts when claimed; a
failed attempt is retried while ``job.attempt <= job.max_retry_count``; a
handler that overruns its timeout ends the attempt with :class:`JobTimeoutError`.
``async def`` handlers (and hooks, retry schedulers) run on an event loop beside
the threads (``start_threads(n, async_concurrency=...)``), or on the application's
own loop with :class:`AsyncWorker`.
The pool talks to the database only through :class:`WorkerDatabase`.
"""

from jobworker import retry as retry  # the module jobworker.retry, a public name
from jobworker._async_runner import DEFAULT_ASYNC_CONCURRENCY
from jobworker._async_worker import AsyncWorker
from jobworker._bundles import BundleHandler
from jobworker._claim_ahead import AUTO_PREFETCH_LIMIT
from jobworker._context import JobContext, current_job_context
from jobworker._database import (
    BUNDLE_JOB_PREFIX,
    ClaimedJobs,
    Outcome,
    OutcomeKind,
    ScheduleState,
    WakeupCallback,
    WorkerDatabase,
)
from jobworker._defaults import (
    add_after_job_hook,
    add_before_job_hook,
    add_observer,
    bundle_handler,
    configure,
    default_pool,
    default_registry,
    do_job,
    finish_threads,
    is_registered,
    job,
    on_error,
    periodic,
    register,
    register_bundle_handler,
    register_func,
    register_func_for_job_type,
    register_periodic,
    register_schedule_retry,
    registered_job_types,
    remove_after_job_hook,
    remove_before_job_hook,
    remove_observer,
    run_job_inline,
    set_database,
    start_polling_available_jobs,
    start_threads,
    stop_polling_available_jobs,
    stop_threads,
    unregister,
)
from jobworker._errors import ErrorCallback, InvalidPayloadError, JobTimeoutError, Snooze
from jobworker._observer import WorkerObserver
from jobworker._outcomes import DEFAULT_RETRY_BASE_DELAY, DEFAULT_RETRY_MAX_DELAY, default_retry_delay
from jobworker._periodic import (
    CATCH_UP_GRACE,
    MAX_CATCH_UP_TICKS,
    PERIODIC_ORIGIN,
    PeriodicOptions,
    PeriodicScheduler,
    PeriodicSpec,
)
from jobworker._pool import WorkerPool
from jobworker._registry import AfterJobHook, BeforeJobHook, Handler, Registry, RetryScheduler
from jobworker._retention import (
    DEFAULT_KEEP_BUNDLES,
    DEFAULT_KEEP_CANCELLED,
    DEFAULT_KEEP_FAILED,
    DEFAULT_KEEP_SUCCEEDED,
    Retention,
    RetentionChanges,
)
from jobworker._schedules import CronSchedule, IntervalSchedule, Schedule, daily, every, monthly, weekly
from jobworker._settings import (
    DEFAULT_DEAD_FOR,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_JOB_TIMEOUT,
    Duration,
    SettingsChanges,
    WorkerSettings,
)

__all__ = [
    "AUTO_PREFETCH_LIMIT",
    "BUNDLE_JOB_PREFIX",
    "CATCH_UP_GRACE",
    "DEFAULT_ASYNC_CONCURRENCY",
    "DEFAULT_DEAD_FOR",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_JOB_TIMEOUT",
    "DEFAULT_KEEP_BUNDLES",
    "DEFAULT_KEEP_CANCELLED",
    "DEFAULT_KEEP_FAILED",
    "DEFAULT_KEEP_SUCCEEDED",
    "DEFAULT_RETRY_BASE_DELAY",
    "DEFAULT_RETRY_MAX_DELAY",
    "MAX_CATCH_UP_TICKS",
    "PERIODIC_ORIGIN",
    "AfterJobHook",
    "AsyncWorker",
    "BeforeJobHook",
    "BundleHandler",
    "ClaimedJobs",
    "CronSchedule",
    "Duration",
    "ErrorCallback",
    "Handler",
    "IntervalSchedule",
    "InvalidPayloadError",
    "JobContext",
    "JobTimeoutError",
    "Outcome",
    "OutcomeKind",
    "PeriodicOptions",
    "PeriodicScheduler",
    "PeriodicSpec",
    "Registry",
    "Retention",
    "RetentionChanges",
    "RetryScheduler",
    "Schedule",
    "ScheduleState",
    "SettingsChanges",
    "Snooze",
    "WakeupCallback",
    "WorkerDatabase",
    "WorkerObserver",
    "WorkerPool",
    "WorkerSettings",
    "add_after_job_hook",
    "add_before_job_hook",
    "add_observer",
    "bundle_handler",
    "configure",
    "current_job_context",
    "daily",
    "default_pool",
    "default_registry",
    "default_retry_delay",
    "do_job",
    "every",
    "finish_threads",
    "is_registered",
    "job",
    "monthly",
    "on_error",
    "periodic",
    "register",
    "register_bundle_handler",
    "register_func",
    "register_func_for_job_type",
    "register_periodic",
    "register_schedule_retry",
    "registered_job_types",
    "remove_after_job_hook",
    "remove_before_job_hook",
    "remove_observer",
    "run_job_inline",
    "set_database",
    "start_polling_available_jobs",
    "start_threads",
    "stop_polling_available_jobs",
    "stop_threads",
    "unregister",
    "weekly",
]
