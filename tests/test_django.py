"""Django: a real project (tests/django_project) on the test PostgreSQL. A view enqueues a task
inside transaction.atomic(); `manage.py jobqueue_worker` (a subprocess) runs it; the result
comes back through Django's task API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import PgServer, count_jobs, wait_for

import jobqueue

PROJECT = Path(__file__).parent / "django_project"


@pytest.fixture(scope="module")
def shop_db(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """One database for the module (Django's settings are per process), with an orders table;
    Django configured on it."""
    name = f"jobqueue_django_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name, template=template_db)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table orders (id int primary key, total int not null)")
    os.environ["SHOP_DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop.settings"
    sys.path.insert(0, str(PROJECT))
    import django

    django.setup()
    try:
        yield url
    finally:
        from django.db import connections

        from jobworker_pg.contrib.django._tasks_api import task_backends

        task_backends()["default"].close()
        connections.close_all()
        pg_server.drop_database(name)


@pytest.fixture
def clean(shop_db: str) -> str:
    with psycopg.connect(shop_db, autocommit=True) as conn:
        conn.execute("truncate orders")
        conn.execute("delete from worker.job")
    return shop_db


@pytest.fixture
def worker(clean: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py jobqueue_worker` with one thread, stopped with SIGTERM (exit 0 checked)."""
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "jobqueue_worker", "--threads", "1", "--poll-interval", "0.2"],
        cwd=PROJECT,
        env={**os.environ, "SHOP_DATABASE_URL": clean},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        log.close()
        output = (tmp_path / "worker.log").read_text()
        assert code == 0, output
        assert "worker stopped cleanly" in output


def _post(data: dict[str, str]) -> Any:
    from django.test import Client

    return Client(raise_request_exception=False).post("/orders/", data)


def _finished(task: Any, result_id: str) -> Any:
    result = task.get_result(result_id)
    return result if result.is_finished else None


def _wait_finished(task: Any, result_id: str) -> Any:
    return wait_for(lambda: _finished(task, result_id), timeout=60, what=f"task result {result_id}")


def test_view_enqueues_in_atomic_and_the_worker_command_runs_the_task(
    worker: subprocess.Popen[bytes],
) -> None:
    from shop.tasks import send_receipt

    response = _post({"id": "1", "email": "ada@example.com"})
    assert response.status_code == 200, response.content
    result_id = response.json()["result_id"]
    result = wait_for(lambda: _finished(send_receipt, result_id), timeout=60, what="the task ran")
    assert result.status == "SUCCESSFUL"
    assert result.return_value == {"order": 1, "to": "ada@example.com", "total": 42}
    assert result.args == [1] and result.kwargs == {"email": "ada@example.com"}
    assert result.attempts == 1
    assert result.enqueued_at is not None and result.finished_at is not None


def test_rolled_back_view_leaves_neither_order_nor_task(clean: str) -> None:
    response = _post({"id": "2", "email": "ada@example.com", "fail": "1"})
    assert response.status_code == 500
    assert count_jobs(clean) == 0
    with psycopg.connect(clean) as conn:
        assert conn.execute("select count(*) from orders").fetchone() == (0,)


def test_jobqueue_add_on_djangos_connection_joins_atomic(clean: str) -> None:
    from django.db import connection, transaction

    from jobworker_pg import PostgresService

    with PostgresService(clean) as service, jobqueue.use_service(service):
        with transaction.atomic():
            jobqueue.add(jobqueue.new_job("plain", "django", {"n": 1}), conn=connection)
            assert count_jobs(clean) == 0  # not committed yet: other connections do not see it
        assert count_jobs(clean) == 1
        with pytest.raises(RuntimeError), transaction.atomic():
            jobqueue.add(jobqueue.new_job("plain", "django", {"n": 2}), conn=connection)
            raise RuntimeError("rolled back")
        assert count_jobs(clean) == 1


def test_priority_and_run_after_map_to_the_job(clean: str) -> None:
    from django.utils import timezone
    from shop.tasks import send_receipt

    from jobworker_pg.contrib.django._tasks_api import task_backends

    later = timezone.now() + timedelta(hours=1)
    result = send_receipt.using(priority=7, run_after=later).enqueue(3, email="b@example.com")
    job = task_backends()["default"].service().get_job(uuid.UUID(result.id))
    assert (job.priority, job.start_at, job.origin) == (7, later, "shop.tasks.send_receipt")
    assert send_receipt.get_result(result.id).status == "READY"


def test_failure_reaches_the_result_and_connections_are_closed_between_tasks(
    worker: subprocess.Popen[bytes],
) -> None:
    from shop.tasks import attempt_number, backend_pid, refuse

    failed = refuse.enqueue("out of stock")
    first, second = backend_pid.enqueue(), backend_pid.enqueue()
    counted = attempt_number.enqueue()
    result = wait_for(lambda: _finished(refuse, failed.id), timeout=60, what="the failing task ran")
    assert result.status == "FAILED"
    assert result.errors[0].exception_class is ValueError
    assert "out of stock" in result.errors[0].traceback
    pids = [_wait_finished(backend_pid, r.id).return_value for r in (first, second)]
    # One worker thread: the same thread ran both, on a new Django connection each time.
    assert pids[0] != pids[1]
    assert _wait_finished(attempt_number, counted.id).return_value == 1


def test_unknown_result_id_does_not_exist(shop_db: str) -> None:
    from shop.tasks import send_receipt

    from jobworker_pg.contrib.django._tasks_api import TaskResultDoesNotExist

    with pytest.raises(TaskResultDoesNotExist):
        send_receipt.get_result(str(uuid.uuid4()))
    with pytest.raises(TaskResultDoesNotExist):
        send_receipt.get_result("not-a-uuid")


@pytest.mark.parametrize("argv", [["help", "jobqueue_worker"], ["jobqueue_worker", "--help"]])
def test_worker_command_has_the_options_of_jobqueue_worker(argv: list[str], shop_db: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=PROJECT,
        env={**os.environ, "SHOP_DATABASE_URL": shop_db},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--threads", "JOBQUEUE_THREADS", "--shutdown-timeout", "--health-port", "--backend"):
        assert option in result.stdout
