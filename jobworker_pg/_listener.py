"""One LISTEN connection per service: wake-ups for workers and stop events for listeners.

The connection LISTENs on ``job_available``, ``job_stopped`` and
``job_bundle_stopped``. ``job_available`` calls the wake-up callback on the
listener thread (it only sets events); stop events go through a queue to a
dispatcher thread, so a slow ServiceListener never delays a wake-up. A dropped
connection is re-opened with capped backoff; after each (re)connect the
wake-up callback gets ``None``: notifications may have been missed, so workers
claim once. A connection that died silently is found by a ping when nothing
arrived for ``ping_interval``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from jobqueue import ServiceListener

logger = logging.getLogger(__name__)

CHANNELS = ("job_available", "job_stopped", "job_bundle_stopped")

DEFAULT_PING_INTERVAL = 10.0
MAX_RECONNECT_DELAY = 10.0
# How long one wait for notifications may block; bounds how long close() waits.
_POLL_SECONDS = 0.2


class NotificationListener:
    """Owns the LISTEN connection and its two threads. Start lazily; stop is idempotent."""

    def __init__(
        self,
        conninfo: str,
        *,
        connect_kwargs: dict[str, Any] | None = None,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._connect_kwargs = connect_kwargs or {}
        self._ping_interval = ping_interval
        self._on_error = on_error
        self._lock = threading.Lock()
        self._listeners: list[ServiceListener] = []
        self._wakeup: Callable[[str | None], None] | None = None
        self._stopping = threading.Event()
        self._connected = threading.Event()
        # Stop events for the dispatcher: (channel, payload), or None to end it.
        self._events: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self.reconnects = 0  # how many times the connection was re-opened (for tests and stats)

    # -- configuration -----------------------------------------------------------

    def add_listener(self, listener: ServiceListener) -> None:
        with self._lock:
            self._listeners.append(listener)
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
            self._dispatcher = threading.Thread(
                target=self._dispatch, name="jobqueue-listener-dispatch", daemon=True
            )
        self._dispatcher.start()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._events.put(None)
        with self._lock:
            threads = [t for t in (self._thread, self._dispatcher) if t is not None]
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    # -- the LISTEN loop ---------------------------------------------------------

    def _run(self) -> None:
        delay = 0.1
        first = True
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, **self._connect_kwargs) as conn:
                    for channel in CHANNELS:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    if not first:
                        self.reconnects += 1
                        logger.info("notification connection re-established", extra={"action": "reconnect"})
                    first = False
                    delay = 0.1
                    self._connected.set()
                    self._wake(None)  # we may have missed notifications while away
                    self._listen(conn)
            except Exception as exc:
                self._connected.clear()
                if self._stopping.is_set():
                    return
                logger.warning(
                    "notification connection failed (%s: %s); retrying in %.1f s",
                    type(exc).__name__,
                    str(exc).strip(),
                    delay,
                    extra={"action": "listen_error"},
                )
                if self._on_error is not None:
                    self._on_error(exc)
                self._stopping.wait(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)

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
        try:
            data = json.loads(payload)
        except ValueError:
            logger.warning("ignoring a %s notification that is not JSON: %r", channel, payload[:200])
            return
        if channel == "job_available":
            self._wake(data.get("type"))
        else:
            self._events.put((channel, data))

    def _wake(self, job_type: str | None) -> None:
        callback = self._wakeup
        if callback is None:
            return
        try:
            callback(job_type)
        except Exception as exc:
            logger.exception("wake-up callback failed")
            if self._on_error is not None:
                self._on_error(exc)

    # -- dispatching stop events -------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            item = self._events.get()
            if item is None:
                return
            channel, data = item
            with self._lock:
                listeners = list(self._listeners)
            for listener in listeners:
                try:
                    if channel == "job_stopped":
                        listener.on_job_stopped(
                            UUID(data["id"]), data["type"], data["origin"], bool(data.get("willRetry"))
                        )
                    else:
                        listener.on_job_bundle_stopped(UUID(data["id"]), data["type"], data["origin"])
                except Exception as exc:
                    logger.exception("service listener failed on %s %s", channel, data.get("id"))
                    if self._on_error is not None:
                        self._on_error(exc)
