"""A TCP port that forwards to a PostgreSQL unix socket.

The embedded test server listens on a unix socket only, and go-jobqueue's tests build
their connection from host and port (POSTGRES_HOST, POSTGRES_PORT) into a URL, which
cannot name a socket directory. This forwards 127.0.0.1:<port> byte for byte to the
socket; the server sees local connections, as the Python tests' are.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def tcp_to_unix(socket_path: Path) -> Iterator[int]:
    """Forward a free 127.0.0.1 port to ``socket_path`` while the block runs; yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()
    connections: list[socket.socket] = []
    lock = threading.Lock()

    def pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # ends the other direction too

    def serve(client: socket.socket, server: socket.socket) -> None:
        back = threading.Thread(target=pump, args=(server, client), name="interop-tcp-proxy", daemon=True)
        back.start()
        pump(client, server)
        back.join()
        with lock:  # closed once both directions ended: no descriptor outlives its connection
            for sock in (client, server):
                sock.close()
                if sock in connections:
                    connections.remove(sock)

    def accept() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.connect(str(socket_path))
            except OSError:
                client.close()
                server.close()
                continue
            with lock:
                connections.extend((client, server))
            threading.Thread(
                target=serve, args=(client, server), name="interop-tcp-proxy", daemon=True
            ).start()

    acceptor = threading.Thread(target=accept, name="interop-tcp-proxy-accept", daemon=True)
    acceptor.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stopping.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        acceptor.join(5)
        with lock:
            for sock in connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # their serve() threads close them
