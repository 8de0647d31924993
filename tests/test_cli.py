"""The ``jobqueue`` command, driven as a subprocess (``python -m jobworker_pg.cli``).

Every run gets ``--database-url`` (the ``db_url`` fixture) or, for the embedded
default, a temporary $JOBQUEUE_EMBEDDED_DIR; the user's own embedded server is
never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from helpers import PgServer, wait_for

import jobqueue
from jobworker_pg import PostgresService
from jobworker_pg.cli._params import Duration

TESTS_DIR = Path(__file__).parent
COMMANDS = [
    [],
    ["migrate"],
    ["worker"],
    ["status"],
    ["jobs"],
    ["show"],
    ["retry"],
    ["cancel"],
    ["delete"],
    ["delete-finished"],
    ["demo"],
    ["embedded"],
    ["embedded", "status"],
    ["embedded", "url"],
    ["embedded", "stop"],
]


def cli_env(embedded_dir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JOBQUEUE_DATABASE_URL", "DATABASE_URL")}
    # Never the user's embedded server: a directory that is not created unless a test means it.
    env["JOBQUEUE_EMBEDDED_DIR"] = str(embedded_dir or Path(tempfile.gettempdir()) / "jobqueue-test-unused")
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_cli(
    *args: str,
    url: str | None = None,
    embedded_dir: Path | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    prefix = ["--database-url", url] if url else []
    return subprocess.run(
        [sys.executable, "-m", "jobworker_pg.cli", *prefix, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**cli_env(embedded_dir), **(env or {})},
        cwd=TESTS_DIR,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr
    return result.stdout


def start_worker(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobworker_pg.cli", "--database-url", url, "worker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env(),
        cwd=TESTS_DIR,
    )


def stop_worker(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def fail_job(conn: psycopg.Connection[Any], job_id: Any, message: str = "boom") -> None:
    """Make a job look failed for good, as a worker would leave it."""
    conn.execute(
        "update worker.job set stopped_at = now(), error_msg = %s, attempt = 1 where id = %s",
        (message, job_id),
    )
    conn.commit()


def succeed_job(conn: psycopg.Connection[Any], job_id: Any) -> None:
    conn.execute(
        "update worker.job set started_at = now(), stopped_at = now(), attempt = 1, result = '1'"
        " where id = %s",
        (job_id,),
    )
    conn.commit()


# -- help, migrate, errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "jobqueue")
def test_help_of_every_command(command: list[str]) -> None:
    out = ok(run_cli(*command, "--help"))
    assert "Usage:" in out


def test_migrate_twice_succeeds(db_url: str) -> None:
    assert "up to date" in ok(run_cli("migrate", url=db_url))
    assert "up to date" in ok(run_cli("migrate", url=db_url))


def test_migrate_installs_the_schema_in_an_empty_database(pg_server: PgServer) -> None:
    name = "jobqueue_cli_empty"
    url = pg_server.create_database(name)
    try:
        result = run_cli("status", url=url)
        assert result.returncode == 1
        assert "jobqueue migrate" in result.stderr
        ok(run_cli("migrate", url=url))
        ok(run_cli("status", url=url))
    finally:
        pg_server.drop_database(name)


def test_unreachable_database_is_a_one_line_error_with_the_password_masked() -> None:
    result = run_cli("status", url="postgresql://bob:s3cret-pw@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert "postgresql://bob:***@127.0.0.1:1/nowhere" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--database-url" in result.stderr


def test_bad_job_id_is_a_usage_error(db_url: str) -> None:
    result = run_cli("show", "not-a-uuid", url=db_url)
    assert result.returncode == 2
    assert "not-a-uuid" in result.stderr


def test_duration_accepts_seconds_and_units() -> None:
    duration = Duration()
    assert duration.convert("90", None, None) == timedelta(seconds=90)
    assert duration.convert("500ms", None, None) == timedelta(milliseconds=500)
    assert duration.convert("12h", None, None) == timedelta(hours=12)
    assert duration.convert("7d", None, None) == timedelta(days=7)


# -- looking at and changing jobs ------------------------------------------------------------------


@pytest.fixture
def svc(db_url: str) -> Iterator[PostgresService]:
    service = PostgresService(db_url)
    try:
        yield service
    finally:
        service.close()


def test_status_counts_jobs_by_type_and_state(
    db_url: str, svc: PostgresService, conn: psycopg.Connection[Any]
) -> None:
    svc.add_jobs([jobqueue.new_job("mail.send", "test", {"n": i}) for i in range(3)])
    failed = svc.add_job(jobqueue.new_job("img.resize", "test", None))
    fail_job(conn, failed.id)

    table = ok(run_cli("status", url=db_url))
    mail_line = next(line for line in table.splitlines() if line.startswith("mail.send"))
    assert mail_line.split()[1:] == ["3", "0", "0", "0", "0", "0", "0", "3"]
    assert next(line for line in table.splitlines() if line.startswith("TOTAL")).split()[-1] == "4"

    counts = json.loads(ok(run_cli("status", "--json", url=db_url)))
    assert counts["pending"] == 3
    assert counts["failed"] == 1
    assert counts["by_type"]["img.resize"]["failed"] == 1


def test_jobs_lists_newest_first_with_filters_and_json(
    db_url: str, svc: PostgresService, conn: psycopg.Connection[Any]
) -> None:
    first = svc.add_job(jobqueue.new_job("a.type", "test", {"i": 1}))
    second = svc.add_job(jobqueue.new_job("b.type", "test", {"i": 2}))
    failed = svc.add_job(jobqueue.new_job("a.type", "test", {"i": 3}))
    done = svc.add_job(jobqueue.new_job("b.type", "test", {"i": 4}))
    fail_job(conn, failed.id, "it broke")
    succeed_job(conn, done.id)

    listed = json.loads(ok(run_cli("jobs", "--json", url=db_url)))
    assert [j["id"] for j in listed] == [str(done.id), str(failed.id), str(second.id), str(first.id)]
    assert listed[1]["state"] == "failed"
    assert listed[1]["error_msg"] == "it broke"

    errors = json.loads(ok(run_cli("jobs", "--errors", "--json", url=db_url)))
    assert [j["id"] for j in errors] == [str(failed.id)]
    todo = json.loads(ok(run_cli("jobs", "--todo", "--json", url=db_url)))
    assert {j["id"] for j in todo} == {str(first.id), str(second.id)}
    of_type = json.loads(ok(run_cli("jobs", "--type", "a.type", "--todo", "--json", url=db_url)))
    assert [j["id"] for j in of_type] == [str(first.id)]
    limited = json.loads(ok(run_cli("jobs", "--limit", "1", "--json", url=db_url)))
    assert [j["id"] for j in limited] == [str(done.id)]

    table = ok(run_cli("jobs", "--errors", url=db_url))
    assert str(failed.id) in table
    assert "it broke" in table
    assert ok(run_cli("jobs", "--type", "no.such.type", url=db_url)).strip() == "no jobs"


def test_show_prints_a_job_and_fails_for_an_unknown_one(db_url: str, svc: PostgresService) -> None:
    job = svc.add_job(jobqueue.new_job("mail.send", "signup", {"to": "a@example.com"}))
    text = ok(run_cli("show", str(job.id), url=db_url))
    assert "id:" in text and str(job.id) in text
    assert "mail.send" in text and "pending" in text and '"a@example.com"' in text

    as_json = json.loads(ok(run_cli("show", str(job.id), "--json", url=db_url)))
    assert as_json["payload"] == {"to": "a@example.com"}

    missing = run_cli("show", "00000000-0000-0000-0000-000000000001", url=db_url)
    assert missing.returncode == 1
    assert "not found" in missing.stderr


def test_retry_resets_failed_jobs(db_url: str, svc: PostgresService, conn: psycopg.Connection[Any]) -> None:
    job = svc.add_job(jobqueue.new_job("mail.send", "test", None))
    fail_job(conn, job.id)
    out = ok(run_cli("retry", str(job.id), url=db_url))
    assert str(job.id) in out
    again = svc.get_job(job.id)
    assert not again.stopped and again.error_msg is None

    unknown = run_cli("retry", "00000000-0000-0000-0000-000000000001", url=db_url)
    assert unknown.returncode == 1
    assert "not found" in unknown.stderr


def test_cancel_stops_pending_jobs_and_reports_unknown_ones(db_url: str, svc: PostgresService) -> None:
    job = svc.add_job(jobqueue.new_job("mail.send", "test", None))
    ok(run_cli("cancel", str(job.id), url=db_url))
    assert svc.get_job(job.id).cancelled

    result = run_cli("cancel", str(job.id), "00000000-0000-0000-0000-000000000001", url=db_url)
    assert result.returncode == 1
    assert "already cancelled" in result.stdout
    assert "1 of 2 jobs not cancelled" in result.stderr


def test_delete_removes_jobs(db_url: str, svc: PostgresService) -> None:
    jobs = svc.add_jobs([jobqueue.new_job("mail.send", "test", None) for _ in range(2)])
    ok(run_cli("delete", *(str(j.id) for j in jobs), url=db_url))
    for job in jobs:
        with pytest.raises(jobqueue.JobNotFoundError):
            svc.get_job(job.id)
    again = run_cli("delete", str(jobs[0].id), url=db_url)
    assert again.returncode == 1
    assert "not found" in again.stdout + again.stderr


def test_prune_deletes_finished_jobs_past_the_given_retention(
    db_url: str, svc: PostgresService, conn: psycopg.Connection[Any]
) -> None:
    done, failed, pending = svc.add_jobs([jobqueue.new_job("t", "test", None) for _ in range(3)])
    succeed_job(conn, done.id)
    fail_job(conn, failed.id)
    assert "deleted 0 finished jobs" in ok(run_cli("prune", url=db_url))  # defaults: 7 and 30 days
    out = ok(run_cli("prune", "--keep-succeeded", "0", "--keep-failed", "forever", url=db_url))
    assert "deleted 1 finished jobs" in out
    with pytest.raises(jobqueue.JobNotFoundError):
        svc.get_job(done.id)
    assert svc.get_job(failed.id).has_error and not svc.get_job(pending.id).stopped
    bad = run_cli("prune", "--keep-failed", "soon", url=db_url)
    assert bad.returncode == 2 and "'soon' is not a duration" in bad.stderr
    # The same from the environment, as for every worker option.
    (again,) = svc.add_jobs([jobqueue.new_job("t", "test", None)])
    succeed_job(conn, again.id)
    keep_env = {"JOBQUEUE_KEEP_SUCCEEDED": "0", "JOBQUEUE_KEEP_FAILED": "forever"}
    assert "deleted 1 finished jobs" in ok(run_cli("prune", url=db_url, env=keep_env))
    assert svc.get_job(failed.id).has_error


def test_delete_finished_deletes_succeeded_jobs_only(
    db_url: str, svc: PostgresService, conn: psycopg.Connection[Any]
) -> None:
    done, failed, pending = svc.add_jobs([jobqueue.new_job("t", "test", None) for _ in range(3)])
    succeed_job(conn, done.id)
    fail_job(conn, failed.id)

    assert "deleted 0 finished jobs" in ok(run_cli("delete-finished", "--older-than", "1h", url=db_url))
    assert "deleted 1 finished job" in ok(run_cli("delete-finished", url=db_url))
    with pytest.raises(jobqueue.JobNotFoundError):
        svc.get_job(done.id)
    assert svc.get_job(failed.id).has_error
    assert not svc.get_job(pending.id).stopped


# -- worker ----------------------------------------------------------------------------------------


def test_worker_finishes_the_running_job_on_sigterm_and_exits_0(
    db_url: str, svc: PostgresService, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    job = svc.add_job(jobqueue.new_job("cli.slow", "test", {"marker": str(marker), "sleep": 1.5}))
    proc = start_worker(db_url, "cli_app", "--threads", "2")
    try:
        wait_for(marker.exists, timeout=30)
        code, out = stop_worker(proc)
    finally:
        proc.kill()
        proc.wait()
    assert code == 0, out
    assert "SIGTERM" in out
    assert "stopped cleanly" in out
    finished = svc.get_job(job.id)
    assert finished.succeeded
    assert finished.result == {"slept": 1.5}


def test_worker_runs_a_registry_named_by_attr(db_url: str, svc: PostgresService) -> None:
    job = svc.add_job(jobqueue.new_job("cli.reg", "test", None))
    proc = start_worker(db_url, "cli_app:registry", "--threads", "1")
    try:
        wait_for(lambda: svc.get_job(job.id).stopped, timeout=30)
        code, out = stop_worker(proc)
    finally:
        proc.kill()
        proc.wait()
    assert code == 0, out
    assert svc.get_job(job.id).result == "from the registry"


def test_worker_with_prefetch_runs_every_job(db_url: str, svc: PostgresService) -> None:
    jobs = svc.add_jobs([jobqueue.new_job("cli.ok", "test", {"i": i}) for i in range(50)])
    proc = start_worker(db_url, "cli_app", "--threads", "2", "--prefetch", "8")
    try:
        wait_for(lambda: all(svc.get_job(j.id).stopped for j in jobs), timeout=30)
        code, out = stop_worker(proc)
    finally:
        proc.kill()
        proc.wait()
    assert code == 0, out
    assert [svc.get_job(j.id).result for j in jobs] == [{"i": i} for i in range(50)]


def test_worker_serves_only_the_job_types_asked_for(db_url: str, svc: PostgresService) -> None:
    wanted = svc.add_job(jobqueue.new_job("cli.ok", "test", {"x": 1}))
    other = svc.add_job(jobqueue.new_job("cli.fail", "test", None))
    proc = start_worker(db_url, "cli_app", "--job-type", "cli.ok", "--poll-interval", "0.2")
    try:
        wait_for(lambda: svc.get_job(wanted.id).stopped, timeout=30)
        code, out = stop_worker(proc)
    finally:
        proc.kill()
        proc.wait()
    assert code == 0, out
    assert svc.get_job(wanted.id).result == {"x": 1}
    assert not svc.get_job(other.id).started


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_module_xyz"], "cannot import 'no_such_module_xyz'"),
        (["cli_app:nothing"], "has no attribute 'nothing'"),
        (["cli_app:slow"], "not a jobworker.Registry"),
        (["cli_app", "--job-type", "cli.unknown"], "cli.unknown not registered"),
        (["cli_app", "--heartbeat", "30s"], "dead_for"),
        (["cli_app", "--prefetch", "-1"], "--prefetch"),
        (["cli_app", "--prefetch", "100000"], "prefetch must be between 0 and 10000"),
    ],
)
def test_worker_refuses_a_bad_app_or_setting(db_url: str, args: list[str], message: str) -> None:
    result = run_cli("worker", *args, url=db_url)
    assert result.returncode in (1, 2)
    assert message in result.stderr


# -- demo and the embedded default -----------------------------------------------------------------


def test_demo_runs_to_completion(db_url: str, svc: PostgresService) -> None:
    out = ok(run_cli("demo", url=db_url, timeout=100))
    assert "bundle handlers ran" in out
    status = svc.get_status()
    assert status.total > 3000
    assert status.failed == 0
    assert status.succeeded == status.total
    assert status.by_type["demo.flaky"].succeeded > 0
    assert status.num_bundles == status.num_bundles_stopped > 0


@pytest.fixture
def embedded_dir() -> Iterator[Path]:
    # When we are root the server runs as another user: its directory's parent must be traversable.
    parent = Path(tempfile.mkdtemp(prefix="jobqueue-cli-"))
    parent.chmod(0o755)
    try:
        yield parent / "embedded"
    finally:
        run_cli("embedded", "stop", embedded_dir=parent / "embedded")
        shutil.rmtree(parent, ignore_errors=True)


def test_embedded_default_starts_once_installs_the_schema_and_stops(embedded_dir: Path) -> None:
    assert "not created yet" in ok(run_cli("embedded", "status", embedded_dir=embedded_dir))

    out = ok(run_cli("demo", "--jobs", "200", "--albums", "2", embedded_dir=embedded_dir, timeout=100))
    assert "(embedded)" in out

    status = ok(run_cli("embedded", "status", embedded_dir=embedded_dir))
    assert "running" in status
    url = ok(run_cli("embedded", "url", embedded_dir=embedded_dir)).strip()
    assert url in status
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(*) from worker.job").fetchone()
    assert row is not None and row[0] == 200 + 2 * 25 + 2

    assert "demo.flaky" in ok(run_cli("status", embedded_dir=embedded_dir))
    assert ok(run_cli("embedded", "stop", embedded_dir=embedded_dir)).strip() == "stopped"
    assert "stopped" in ok(run_cli("embedded", "status", embedded_dir=embedded_dir))
    assert ok(run_cli("embedded", "stop", embedded_dir=embedded_dir)).strip() == "not running"


# -- examples ----------------------------------------------------------------------------------------

EXAMPLES_DIR = TESTS_DIR.parent / "examples"

FASTAPI_DRIVER = """
import sys
from fastapi.testclient import TestClient
import fastapi_app

with TestClient(fastapi_app.app) as client:
    created = client.post("/signups", json={"email": "ada@example.com"})
    assert created.status_code == 201, created.text
    duplicate = client.post("/signups", json={"email": "ada@example.com"})
    assert duplicate.status_code == 409, duplicate.text
    job_id = created.json()["job_id"]
    done = client.get(f"/jobs/{job_id}", params={"wait": 30}).json()  # the app's AsyncWorker ran it
    assert done["state"] == "succeeded" and done["result"] == {"sent_to": "ada@example.com"}, done
print(job_id)
"""


def test_plain_script_example_runs_its_jobs(db_url: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES_DIR / "plain_script.py"), db_url],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
    )
    out = ok(result)
    assert "email.send: succeeded, result sent to ada@example.com" in out


def test_fastapi_example_enqueues_in_the_request_transaction(db_url: str, svc: PostgresService) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    env = cli_env() | {"DATABASE_URL": db_url}
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLES_DIR), env["PYTHONPATH"]])
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", FASTAPI_DRIVER],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=EXAMPLES_DIR,
    )
    job_id = ok(result).strip()
    # One job, run by the app's AsyncWorker: the duplicate signup rolled back its user and job.
    assert svc.get_job(UUID(job_id)).succeeded
    assert svc.get_status().total == 1

    # A separate worker process runs the same async handler (the app is not running now).
    job_id = str(
        svc.add_job(
            jobqueue.new_job("signup_jobs.WelcomeEmail", "test", {"user_id": 2, "email": "ada@example.com"})
        ).id
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobworker_pg.cli", "--database-url", db_url, "worker", "signup_jobs"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=EXAMPLES_DIR,
    )
    try:
        wait_for(lambda: svc.get_job(UUID(job_id)).stopped, timeout=30)
        code, out = stop_worker(proc)
    finally:
        proc.kill()
        proc.wait()
    assert code == 0, out
    assert svc.get_job(UUID(job_id)).result == {"sent_to": "ada@example.com"}


def test_bundle_handlers_lists_and_removes_declarations(db_url: str, svc: PostgresService) -> None:
    assert "no bundle handlers declared" in ok(run_cli("bundle-handlers", url=db_url))
    svc.declare_bundle_handlers({"report.build": 2})
    listed = ok(run_cli("bundle-handlers", url=db_url)).splitlines()
    assert listed[0].split() == ["BUNDLE", "TYPE", "RETRIES", "REGISTERED", "LAST", "SEEN", "PENDING"]
    assert listed[1].split()[:2] == ["report.build", "2"] and listed[1].split()[-1] == "0"
    out = ok(run_cli("bundle-handlers", "--remove", "report.build", "--remove", "nope", url=db_url))
    assert out.splitlines() == ["report.build: removed", "nope: not declared"]
    assert svc.list_bundle_handlers() == []
