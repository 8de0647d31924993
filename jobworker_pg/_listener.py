"""One LISTEN connection per service: wake-ups for workers and stop events for listeners.

The connection LISTENs on ``job_available``, ``job_stopped`` and
``job_bundle_stopped``. ``job_available`` calls the wake-up callback on the
listener thread (it only sets events); stop events go through a queue to a
dispatcher thread, so a slow ServiceListener never delays a wake-up. The
dispatcher thread starts with the first ServiceListener; without one, stop
events are dropped as they arrive. A dropped
connection is re-opened with capped backoff; after each (re)connect the
wake-up callback gets ``None``: notifications may have been missed, so workers
claim once. A connection that died silently is found by a ping when nothing
arrived for ``ping_interval``.

Right after LISTEN, the listener sends itself a notification on a private
channel. Where it never arrives (a PgBouncer in transaction pooling mode runs
LISTEN and NOTIFY on different server connections), LISTEN cannot work: the
listener says so once in the log and wakes the workers every
``fallback_poll_interval`` instead (stop events are then not delivered).

A ServiceListener that has an ``on_listening(listen_works)`` method hears of
every (re)connect, on the dispatcher thread in order with the stop events:
whether LISTEN works, and that events may have been missed before
(``jobqueue.wait_for_job`` reads its job again then).
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg import sql

from jobqueue import JobStoppedEvent, ServiceListener

logger = logging.getLogger(__name__)

CHANNELS = ("job_available", "job_stopped", "job_bundle_stopped")

#: The listener connection's application_name (in pg_stat_activity), unless connect_kwargs names one.
APPLICATION_NAME = "jobqueue-listen"
DEFAULT_PING_INTERVAL = 10.0
DEFAULT_FALLBACK_POLL_INTERVAL = 1.0
# How long the self-notification may take before LISTEN is judged not to work.
PROBE_TIMEOUT = 2.0
# Reconnect attempts back off from 0.1 s to this: about one a second while the server is
# away, so that LISTEN (and the claim after it) is back within a second of its return.
MAX_RECONNECT_DELAY = 1.0
# While the connection keeps failing, its failure is logged at most this often.
FAILURE_LOG_SECONDS = 10.0
#: Stop events waiting for slow service listeners beyond this many are dropped (and counted):
#: memory stays bounded when listeners cannot keep up with the rate of stops.
MAX_QUEUED_EVENTS = 10_000
# The dispatcher hands at most this many waiting events on at once (one job read per batch).
MAX_DISPATCH_BATCH = 500
# How long one wait for notifications may block; bounds how long close() waits.
_POLL_SECONDS = 0.2


class NotificationListener:
    """Owns the LISTEN connection and its thread, plus a dispatch thread once a ServiceListener
    is added. Start lazily; stop is idempotent."""

    def __init__(
        self,
        conninfo: str,
        *,
        connect_kwargs: dict[str, Any] | None = None,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        fallback_poll_interval: float = DEFAULT_FALLBACK_POLL_INTERVAL,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._connect_kwargs = connect_kwargs or {}
        self._ping_interval = ping_interval
        self._fallback_poll_interval = fallback_poll_interval
        self._probe_channel = f"jobqueue_probe_{uuid4().hex}"
        self._said_listen_fails = False
        self.listen_works: bool | None = None  # None until the first probe
        self._on_error = on_error
        self._lock = threading.Lock()
        self._listeners: list[ServiceListener] = []
        self._wakeup: Callable[[str | None], None] | None = None
        self._stopping = threading.Event()
        self._connected = threading.Event()
        # Stop events for the dispatcher, (channel, payload); bounded: see MAX_QUEUED_EVENTS.
        self._events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(MAX_QUEUED_EVENTS)
        self.dropped_events = 0  # stop events dropped because the listeners fell behind
        self._last_drop_warning = -FAILURE_LOG_SECONDS
        self._thread: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self.reconnects = 0  # how many times the connection was re-opened (for tests and stats)

    # -- configuration -----------------------------------------------------------

    def add_listener(self, listener: ServiceListener) -> None:
        with self._lock:
            self._listeners.append(listener)
            if self._connected.is_set():  # it missed the announcement of this connection
                self._events.put(("listening", {"works": self.listen_works}))
            start_dispatcher = self._dispatcher is None and not self._stopping.is_set()
            if start_dispatcher:
                # Only a process with a ServiceListener pays for the dispatch thread.
                self._dispatcher = threading.Thread(
                    target=self._dispatch, name="jobqueue-listener-dispatch", daemon=True
                )
        if start_dispatcher:
            assert self._dispatcher is not None
            self._dispatcher.start()
        self.start()

    def set_wakeup(self, callback: Callable[[str | None], None] | None) -> None:
        with self._lock:
            self._wakeup = callback
        if callback is not None:
            self.start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the LISTEN is in place (True) or ``timeout`` passes (False)."""
        return self._connected.wait(timeout)

    # -- life cycle --------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="jobqueue-listen", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._lock:
            threads = [t for t in (self._thread, self._dispatcher) if t is not None]
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        self._connected.clear()

    # -- the LISTEN loop ---------------------------------------------------------

    def _run(self) -> None:
        delay = 0.1
        first = True
        last_warned = -FAILURE_LOG_SECONDS
        while not self._stopping.is_set():
            try:
                with psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    **{"application_name": APPLICATION_NAME, **self._connect_kwargs},
                ) as conn:
                    for channel in CHANNELS:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    if not first:
                        self.reconnects += 1
                        logger.info("notification connection re-established", extra={"action": "reconnect"})
                    first = False
                    delay = 0.1
                    last_warned = -FAILURE_LOG_SECONDS
                    self.listen_works = self._probe(conn)
                    with self._lock:
                        self._connected.set()
                        if self._listeners:  # a later listener hears of it when added
                            self._events.put(("listening", {"works": self.listen_works}))
                    self._wake(None)  # we may have missed notifications while away
                    if self.listen_works:
                        self._listen(conn)
                    else:
                        self._poll_instead(conn)
            except Exception as exc:
                self._connected.clear()
                if self._stopping.is_set():
                    return
                now = time.monotonic()
                if now - last_warned >= FAILURE_LOG_SECONDS:  # one line per outage, then a few
                    last_warned = now
                    logger.warning(
                        "notification connection failed (%s: %s); retrying every %.1f s at most",
                        type(exc).__name__,
                        str(exc).strip(),
                        MAX_RECONNECT_DELAY,
                        extra={"action": "listen_error"},
                    )
                self._report(exc)
                self._stopping.wait(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)

    def _probe(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether a notification sent from another connection reaches this one (LISTEN works).

        From another connection: behind PgBouncer in transaction mode a NOTIFY on the
        listening connection itself comes back (its statement runs on the server connection
        that LISTENed), yet nothing reaches it while it waits, linked to no server connection.
        """
        channel = sql.Identifier(self._probe_channel)
        conn.execute(sql.SQL("LISTEN {}").format(channel))
        with psycopg.connect(
            self._conninfo, autocommit=True, **{"application_name": APPLICATION_NAME, **self._connect_kwargs}
        ) as sender:
            sender.execute(sql.SQL("NOTIFY {}").format(channel))
        deadline = time.monotonic() + PROBE_TIMEOUT
        came_back = False
        while not came_back and (left := deadline - time.monotonic()) > 0:
            # Let each notifies() generator finish: it holds the connection's lock while open.
            for notify in conn.notifies(timeout=left, stop_after=1):
                if notify.channel == self._probe_channel:
                    came_back = True
                else:
                    self._handle(notify.channel, notify.payload)
        if came_back:
            conn.execute(sql.SQL("UNLISTEN {}").format(channel))
        return came_back

    def _poll_instead(self, conn: psycopg.Connection[Any]) -> None:
        """LISTEN does not work on this connection: wake the workers periodically instead."""
        if not self._said_listen_fails:
            self._said_listen_fails = True
            logger.warning(
                "LISTEN/NOTIFY does not work on this database connection (a PgBouncer in "
                "transaction pooling mode?): workers poll every %.1f s instead",
                self._fallback_poll_interval,
                extra={"action": "listen_fallback"},
            )
        last_ping = time.monotonic()
        while not self._stopping.wait(self._fallback_poll_interval):
            self._wake(None)
            if time.monotonic() - last_ping >= self._ping_interval:
                conn.execute("SELECT 1")  # a dead connection: reconnect, and probe again
                last_ping = time.monotonic()

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        last_seen = time.monotonic()
        while not self._stopping.is_set():
            got_any = False
            for notify in conn.notifies(timeout=_POLL_SECONDS, stop_after=100):
                got_any = True
                self._handle(notify.channel, notify.payload)
            now = time.monotonic()
            if got_any:
                last_seen = now
            elif now - last_seen >= self._ping_interval:
                conn.execute("SELECT 1")  # raises if the connection died silently
                last_seen = now

    def _handle(self, channel: str, payload: str) -> None:
        if channel != "job_available" and not self._listeners:
            return  # a stop event nobody listens to (a worker process, typically): one per job
        try:
            data = json.loads(payload)
        except ValueError:
            logger.warning("ignoring a %s notification that is not JSON: %r", channel, payload[:200])
            return
        if channel == "job_available":
            self._wake(data.get("type"))
            return
        try:
            self._events.put_nowait((channel, data))
        except queue.Full:
            self._dropped()

    def _dropped(self) -> None:
        """A stop event did not fit: the listeners are too slow for the rate of stops."""
        self.dropped_events += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= FAILURE_LOG_SECONDS:
            self._last_drop_warning = now
            logger.warning(
                "service listeners fall behind: %d stop events waiting, %d dropped so far",
                self._events.qsize(),
                self.dropped_events,
                extra={"action": "listener_backlog"},
            )

    def _wake(self, job_type: str | None) -> None:
        callback = self._wakeup
        if callback is None:
            return
        try:
            callback(job_type)
        except Exception as exc:
            logger.exception("wake-up callback failed")
            self._report(exc)

    # -- dispatching stop events -------------------------------------------------

    def _dispatch(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._events.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < MAX_DISPATCH_BATCH:  # the backlog, handled as one batch
                try:
                    batch.append(self._events.get_nowait())
                except queue.Empty:
                    break
            with self._lock:
                listeners = list(self._listeners)
            jobs = [_job_event(data) for channel, data in batch if channel == "job_stopped"]
            bundles = {data["id"]: data for channel, data in batch if channel == "job_bundle_stopped"}
            listening = [bool(data["works"]) for channel, data in batch if channel == "listening"]
            for listener in listeners:
                self._deliver(listener, listening, jobs, list(bundles.values()))

    def _deliver(
        self,
        listener: ServiceListener,
        listening: list[bool],
        jobs: list[JobStoppedEvent],
        bundles: list[dict[str, Any]],
    ) -> None:
        """Hand a batch to one listener: (re)connects first to a listener that wants them
        (``on_listening``), then all job events in one call where it takes batches
        (``on_jobs_stopped``), else one call per event; then each bundle once."""
        batched = getattr(listener, "on_jobs_stopped", None)
        calls: list[tuple[Callable[[], object], str]] = []
        on_listening = getattr(listener, "on_listening", None)
        if callable(on_listening):
            for works in listening:
                calls.append((functools.partial(on_listening, works), "listening"))
        if jobs and callable(batched):
            calls.append((functools.partial(batched, jobs), f"{len(jobs)} job_stopped events"))
        else:
            for e in jobs:
                calls.append((functools.partial(listener.on_job_stopped, *e), f"job_stopped {e.job_id}"))
        for data in bundles:
            fire = functools.partial(
                listener.on_job_bundle_stopped, UUID(data["id"]), data["type"], data["origin"]
            )
            calls.append((fire, f"job_bundle_stopped {data['id']}"))
        for call, what in calls:
            try:
                call()
            except Exception as exc:
                logger.exception("service listener failed on %s", what)
                self._report(exc)

    def _report(self, exc: BaseException) -> None:
        """Hand ``exc`` to the on_error callback; a callback that raises is logged, so that
        it can never kill the listener or dispatcher thread."""
        if self._on_error is None:
            return
        try:
            self._on_error(exc)
        except Exception:
            logger.exception("the on_error callback raised")


def _job_event(data: dict[str, Any]) -> JobStoppedEvent:
    return JobStoppedEvent(UUID(data["id"]), data["type"], data["origin"], bool(data.get("willRetry")))
