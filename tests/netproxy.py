"""A TCP proxy in front of the test database that tests can take down and bring back at once.

Down, it cuts every connection it carries and closes each new one as soon as it is accepted,
as a network outage looks to a client; up, it forwards bytes both ways. Unlike stopping the
server, bringing it back is instant, so a test can time it against the client's retries.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

from psycopg.conninfo import conninfo_to_dict, make_conninfo


class NetProxy:
    """Forwards 127.0.0.1:<port> to the server of ``url``; ``url`` itself goes through it."""

    def __init__(self, url: str) -> None:
        params = conninfo_to_dict(url)
        host = str(params.get("host") or "localhost")
        port = int(params.get("port") or 5432)
        if host.startswith("/"):
            self._target: tuple[int, str | tuple[str, int]] = (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
        else:
            self._target = (socket.AF_INET, (host, port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        params["host"], params["port"] = "127.0.0.1", self._listener.getsockname()[1]
        self.url = make_conninfo("", **params)
        self._lock = threading.Lock()
        self._up = True
        self._open: set[socket.socket] = set()
        self.accepted = 0  # connections forwarded so far
        self._closing = False
        self._thread = threading.Thread(target=self._accept, name="netproxy", daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Cut every connection and refuse new ones until :meth:`up`."""
        with self._lock:
            self._up = False
            cut, self._open = self._open, set()
        for sock in cut:
            _shut(sock)

    def up(self) -> None:
        with self._lock:
            self._up = True

    @property
    def carried(self) -> int:
        """Connections open through the proxy now (client sides)."""
        with self._lock:
            return len(self._open) // 2

    def close(self) -> None:
        self._closing = True
        self.down()
        _shut(self._listener)  # shutdown, not just close: that wakes the accept() blocked on it

    def __enter__(self) -> NetProxy:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                up = self._up
            if not up:
                _shut(client)
                continue
            try:
                server = socket.socket(self._target[0], socket.SOCK_STREAM)
                server.connect(self._target[1])
            except OSError:
                _shut(client)
                continue
            with self._lock:
                self._open.update((client, server))
                self.accepted += 1
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _shut(source)
            _shut(sink)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
