"""A real PgBouncer (Debian's ``pgbouncer``) in front of the test PostgreSQL, on a free port."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
from helpers import wait_for
from psycopg.conninfo import conninfo_to_dict, make_conninfo

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """One pgbouncer process in ``mode`` (transaction or session) forwarding every database
    name to the server of ``server_url``, without authentication (trust) on 127.0.0.1."""

    def __init__(self, server_url: str, mode: str, pool_size: int = 20) -> None:
        server = conninfo_to_dict(server_url)
        self.user = str(server.get("user") or "postgres")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jq-bouncer-"))
        upstream = " ".join(
            f"{key}={server[key]}" for key in ("host", "port", "user", "password") if server.get(key)
        )
        (self.dir / "users.txt").write_text(f'"{self.user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            f"""[databases]
* = {upstream}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir / "users.txt"}
pool_mode = {mode}
default_pool_size = {pool_size}
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
server_reset_query = DISCARD ALL
logfile = {self.dir / "pgbouncer.log"}
pidfile = {self.dir / "pgbouncer.pid"}
"""
        )
        command = [BINARY, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root: it runs as the owner of the
            # server's socket directory (the embedded server's user), else as postgres
            host = str(server.get("host") or "")
            account = pwd.getpwuid(os.stat(host).st_uid) if host.startswith("/") else pwd.getpwnam("postgres")
            for path in (self.dir, *self.dir.iterdir()):
                os.chown(path, account.pw_uid, account.pw_gid)
            command[1:1] = ["-u", account.pw_name]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, timeout=20, what=f"pgbouncer on port {self.port}")

    def url(self, dbname: str) -> str:
        """A URL for ``dbname`` through this pgbouncer."""
        return make_conninfo(host="127.0.0.1", port=self.port, user=self.user, dbname=dbname)

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            log = (self.dir / "pgbouncer.log").read_text() if (self.dir / "pgbouncer.log").exists() else ""
            raise AssertionError(f"pgbouncer exited with {self.process.returncode}: {log}")
        try:
            psycopg.connect(self.url("postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # SIGINT: safe shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
