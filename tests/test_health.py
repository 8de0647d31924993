"""`jobqueue worker --health-port / --health-file`: healthy while the database answers,
unhealthy once it has been gone longer than --unhealthy-after, healthy again after it is back."""

from __future__ import annotations

import http.client
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import wait_for
from pgbouncer import free_port
from processes import ThrowawayPostgres
from test_cli import TESTS_DIR, cli_env


def _status(port: int) -> int | None:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
        connection.close()
        return status
    except OSError:
        return None


@pytest.mark.slow
def test_health_check_follows_the_database(throwaway: ThrowawayPostgres, tmp_path: Path) -> None:
    url = throwaway.new_database()
    port = free_port()
    marker = tmp_path / "healthy"
    env = {**cli_env(), "JOBQUEUE_HEALTH_PORT": str(port), "JOBQUEUE_UNHEALTHY_AFTER": "2s"}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobworker_pg.cli",
            "--database-url",
            url,
            "worker",
            "cli_app",
            "--health-file",
            str(marker),
            "--stats-interval",
            "1s",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=TESTS_DIR,
    )
    try:
        wait_for(lambda: _status(port) == 200, timeout=60, what="healthy at start")
        wait_for(marker.exists, timeout=30, what="the health file")
        throwaway.stop()
        wait_for(lambda: _status(port) == 503, timeout=60, what="unhealthy without the database")
        wait_for(lambda: not marker.exists(), timeout=30, what="the health file removed")
        throwaway.start()
        wait_for(lambda: _status(port) == 200, timeout=60, what="healthy again")
        wait_for(marker.exists, timeout=30, what="the health file back")
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err.decode()
    assert not marker.exists()  # removed at exit
