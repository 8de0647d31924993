"""AsyncWorker: a worker that runs async handlers on the application's own event loop.

For asyncio applications (FastAPI, Starlette, aiohttp) that want their jobs to
run in the same process and loop as the app::

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service = jobworker_pg.init_job_queue(url)
        async with jobworker.AsyncWorker(service, concurrency=50):
            yield
        service.close()

It is a :class:`WorkerPool` whose async lane is the running loop: the same
claims (with claim tokens), heartbeats, reaper, timeouts, prefetch, batched
outcome writes and reconnects as ``start_threads``. Those database calls run on
the pool's service threads, not on the loop: a handler that blocks the loop
slows the app's other tasks (and is reported in the log), but never stops the
heartbeat, so its job is not taken for dead. Sync handlers in the same registry
run on ``threads`` worker threads.
"""

from __future__ import annotations

import asyncio
import itertools
from types import TracebackType

from jobworker._database import WorkerDatabase
from jobworker._defaults import default_pool
from jobworker._errors import ErrorCallback
from jobworker._pool import WorkerPool
from jobworker._queue_plan import QueueSpec
from jobworker._registry import Registry
from jobworker._settings import Duration, WorkerSettings

#: Worker threads an AsyncWorker starts for the sync job types of its registry, if any.
DEFAULT_SYNC_THREADS = 4
#: How many async jobs an AsyncWorker runs at once unless told otherwise.
DEFAULT_CONCURRENCY = 100

_numbers = itertools.count(1)


class AsyncWorker:
    """Runs the jobs of ``registry`` from ``database`` inside the running event loop.

    ``database`` defaults to the one :func:`jobworker_pg.init_job_queue` handed to
    jobworker; ``registry`` to the default registry; ``settings`` to those of
    ``jobworker.configure``. At most ``concurrency`` async handlers run at once;
    sync handlers run on ``threads`` threads (default DEFAULT_SYNC_THREADS when
    sync types are registered, else none). ``queues`` chooses queues as in
    ``WorkerPool.start_threads`` (None: ``"default"``). Leaving the ``async with`` block (or
    :meth:`stop`) stops claiming, waits for running jobs (up to
    ``shutdown_timeout``; None: as long as they take) and saves their outcomes.
    Use it from one event loop; not thread-safe.
    """

    def __init__(
        self,
        database: WorkerDatabase | None = None,
        *,
        registry: Registry | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        threads: int | None = None,
        queues: QueueSpec = None,
        settings: WorkerSettings | None = None,
        shutdown_timeout: Duration | None = None,
        on_error: ErrorCallback | None = None,
        name: str | None = None,
    ) -> None:
        defaults = default_pool()
        self._pool = WorkerPool(
            database if database is not None else defaults.database,
            registry if registry is not None else defaults.registry,
            settings if settings is not None else defaults.settings,
            name=name or f"jobworker-async-{next(_numbers)}",
        )
        self._pool.on_error(on_error)
        self._concurrency = concurrency
        self._threads = threads
        self._queues = queues
        self._shutdown_timeout = shutdown_timeout

    @property
    def pool(self) -> WorkerPool:
        """The pool behind this worker (for its settings, registry and state)."""
        return self._pool

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._pool.running

    async def start(self) -> None:
        """Start claiming and running jobs on the running loop. Raises as
        ``WorkerPool.start_threads`` (NotInitializedError without a database, ...)."""
        loop = asyncio.get_running_loop()
        threads = self._threads
        if threads is None:
            has_sync = any(not h.is_async for h in self._pool.registry.handlers().values())
            threads = DEFAULT_SYNC_THREADS if has_sync else 0
        await asyncio.to_thread(self._pool._start, threads, self._concurrency, loop, self._queues)

    async def stop(self) -> bool:
        """Stop claiming, let running jobs finish, save their outcomes; True when all of that
        happened within ``shutdown_timeout``. Harmless when not running."""
        return await asyncio.to_thread(self._pool.finish_threads, self._shutdown_timeout)

    async def __aenter__(self) -> AsyncWorker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
