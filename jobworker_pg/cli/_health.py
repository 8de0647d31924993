"""The worker's health check, for orchestrators: an HTTP endpoint and/or a file.

Unhealthy means the worker has not reached its database for longer than a threshold
(``--unhealthy-after``): a worker that cannot claim or save is useless, and restarting it
is the orchestrator's only remedy once the outage is its own (a broken network namespace,
a DNS entry gone stale). Shorter outages stay healthy: the worker reconnects by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: How often the health file's modification time is refreshed while healthy.
FILE_REFRESH_SECONDS = 1.0


class Health:
    """Judges the worker healthy while ``failing_for()`` (seconds without the database) is at
    most ``threshold``; serves that on ``port`` (GET any path: 200 or 503 with one line of
    text) and keeps ``file`` fresh while healthy (removed when not)."""

    def __init__(
        self,
        failing_for: Callable[[], float],
        threshold: float,
        *,
        port: int | None = None,
        host: str = "0.0.0.0",
        file: Path | None = None,
    ) -> None:
        self._failing_for = failing_for
        self._threshold = threshold
        self._file = file
        self._file_touched = -float("inf")
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if port is not None:
            self._server = ThreadingHTTPServer((host, port), _handler(self.report))
            self._server.daemon_threads = True
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="jobqueue-health", daemon=True
            )
            self._thread.start()

    @property
    def port(self) -> int | None:
        """The port served (the real one when 0 was asked for)."""
        return None if self._server is None else int(self._server.server_address[1])

    def report(self) -> tuple[bool, str]:
        """(healthy, one line saying why)."""
        lost = self._failing_for()
        if lost > self._threshold:
            return False, f"unhealthy: no database for {lost:.0f} s (threshold {self._threshold:g} s)"
        if lost > 0:
            return True, f"ok: database unreachable for {lost:.0f} s, reconnecting"
        return True, "ok"

    def tick(self) -> None:
        """Refresh the health file (call it from the worker's main loop)."""
        if self._file is None:
            return
        healthy, _ = self.report()
        now = time.monotonic()
        try:
            if healthy and now - self._file_touched >= FILE_REFRESH_SECONDS:
                self._file.touch()
                self._file_touched = now
            elif not healthy and self._file_touched > -float("inf"):
                self._file.unlink(missing_ok=True)
                self._file_touched = -float("inf")
        except OSError as exc:
            logger.warning("health file %s: %s", self._file, exc, extra={"action": "health"})

    def close(self) -> None:
        """Stop serving and remove the health file."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._file is not None:
            self._file.unlink(missing_ok=True)


def _handler(report: Callable[[], tuple[bool, str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            healthy, text = report()
            body = (text + "\n").encode()
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("health: " + format, *args)

    return Handler
