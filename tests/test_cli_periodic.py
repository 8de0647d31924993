"""``jobqueue periodic list|enable|disable|run|delete NAME`` (with ``--json``), as a subprocess."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from test_cli import ok, run_cli

import jobworker
from jobworker import PeriodicScheduler
from jobworker._errors import ErrorReporter
from jobworker._periodic import periodic_spec
from jobworker_pg import PostgresService


def _declare(service: PostgresService, name: str = "nightly") -> None:
    spec = periodic_spec(name, jobworker.daily(3, 0), "report.build", timezone="Europe/Berlin")
    PeriodicScheduler(service, [spec], ErrorReporter(), "cli-test", lambda: datetime.now(UTC)).run_once()


def test_periodic_list_shows_the_stored_schedules(service: PostgresService, db_url: str) -> None:
    assert "no periodic schedules" in ok(run_cli("periodic", "list", url=db_url))
    _declare(service)
    text = ok(run_cli("periodic", "list", url=db_url))
    assert "nightly" in text and "0 3 * * *" in text and "Europe/Berlin" in text and "report.build" in text
    [entry] = json.loads(ok(run_cli("periodic", "list", "--json", url=db_url)))
    assert entry["name"] == "nightly" and entry["enabled"] is True and entry["orphaned"] is False
    assert datetime.fromisoformat(entry["next_run"]).astimezone(UTC).hour in (1, 2)  # 03:00 Berlin


def test_periodic_disable_enable_and_run(service: PostgresService, db_url: str) -> None:
    _declare(service)
    assert json.loads(ok(run_cli("periodic", "disable", "nightly", "--json", url=db_url)))["enabled"] is False
    assert service.get_periodic("nightly").enabled is False
    assert "enabled nightly; next run" in ok(run_cli("periodic", "enable", "nightly", url=db_url))
    job = json.loads(ok(run_cli("periodic", "run", "nightly", "--json", url=db_url)))
    assert job["type"] == "report.build" and job["scheduled_for"] is not None
    assert service.get_job(job["id"]).origin == "periodic"
    assert "deleted nightly" in ok(run_cli("periodic", "delete", "nightly", url=db_url))


def test_periodic_of_an_unknown_name_is_a_one_line_error(db_url: str) -> None:
    result = run_cli("periodic", "enable", "nope", url=db_url)
    assert result.returncode == 1
    assert "periodic schedule nope not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_of_the_periodic_commands() -> None:
    for command in (["periodic"], ["periodic", "list"], ["periodic", "run"], ["periodic", "delete"]):
        assert "Usage:" in ok(run_cli(*command, "--help"))
