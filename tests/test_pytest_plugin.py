"""The pytest plugin (jobworker_pg.pytest_plugin) as a user's test suite sees it, run with pytester
in a subprocess against our test server (JOBQUEUE_TEST_DATABASE_URL: no second embedded server)."""

from __future__ import annotations

import shutil
import tempfile
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from helpers import PgServer

pytest_plugins = ["pytester"]

PLUGIN = "jobworker_pg.pytest_plugin"


def plugin_args() -> list[str]:
    """``-p`` the plugin unless its pytest11 entry point already loads it."""
    installed = any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", PLUGIN]


@pytest.fixture
def suite(pytester: pytest.Pytester, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("JOBQUEUE_TEST_DATABASE_URL", pg_server.admin_url)
    pytester.makeconftest(
        """
        import jobqueue, jobworker

        @jobworker.job("email.send")
        def send(job: jobqueue.Job) -> dict[str, str]:
            if job.payload["to"].startswith("bad"):
                raise ValueError("no such mailbox: " + job.payload["to"])
            if job.payload.get("then"):
                jobqueue.add(jobqueue.new_job("email.send", "chain", {"to": job.payload["then"]}))
            return {"sent_to": job.payload["to"]}
        """
    )
    return pytester


def test_plugin_fixtures_and_helpers_work_in_a_users_suite(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        textwrap.dedent(
            """
            from datetime import UTC, datetime, timedelta
            from unittest.mock import ANY

            import psycopg
            import pytest

            import jobqueue
            from jobworker_pg import PostgresService, ignore_jobs
            from jobworker_pg.pytest_plugin import assert_enqueued, drain, enqueued


            def mail(to, **kw):
                return jobqueue.new_job("email.send", "signup", {"to": to}, **kw)


            def test_db_url_is_a_fresh_database_with_the_schema(jobqueue_db_url):
                with psycopg.connect(jobqueue_db_url) as conn:
                    assert conn.execute("select count(*) from worker.job").fetchone() == (0,)


            def test_service_is_current_and_drain_runs_due_jobs_and_what_they_add(jobqueue_service):
                assert isinstance(jobqueue_service, PostgresService)
                jobqueue.add(mail("a@example.com", priority=1))
                jobqueue.add(jobqueue.new_job("email.send", "signup", {"to": "b@example.com", "then": "c@x"}))
                in_an_hour = datetime.now(UTC) + timedelta(hours=1)
                later = jobqueue.add(mail("later@example.com", start_at=in_an_hour))
                assert_enqueued("email.send", {"to": "a@example.com"})
                ran = drain()
                assert [j.result for j in ran] == [
                    {"sent_to": "a@example.com"}, {"sent_to": "b@example.com"}, {"sent_to": "c@x"}
                ]
                assert not jobqueue.get_job(later.id).stopped
                assert [j.payload["to"] for j in drain(include_scheduled=True)] == ["later@example.com"]
                assert jobqueue.get_job(later.id).succeeded


            def test_drain_raises_the_failure_and_include_scheduled_runs_retries(jobqueue_service):
                job = jobqueue.add(mail("bad@example.com", max_retry_count=2))
                with pytest.raises(jobqueue.JobFailedError, match="no such mailbox") as info:
                    drain()
                assert isinstance(info.value.__cause__, ValueError)
                assert jobqueue.get_job(job.id).state == jobqueue.JobState.RETRYING
                attempts = drain(include_scheduled=True, raise_errors=False)
                assert len(attempts) == 2
                assert jobqueue.get_job(job.id).state == jobqueue.JobState.FAILED


            def test_sync_fixture_runs_jobs_inline(jobqueue_sync):
                job = jobqueue.add(mail("s@example.com"))
                assert job.result == {"sent_to": "s@example.com"}
                assert_enqueued("email.send", {"to": "s@example.com"}, count=1)
                with pytest.raises(jobqueue.JobFailedError) as info:
                    jobqueue.add(mail("bad@example.com"))
                assert isinstance(info.value.__cause__, ValueError)


            def test_assert_enqueued_sees_ignored_jobs_and_accepts_any(jobqueue_service):
                with ignore_jobs():
                    jobqueue.add(mail("ignored@example.com"))
                assert_enqueued("email.send", {"to": ANY})
                assert [j.payload for j in enqueued("email.send")] == [{"to": "ignored@example.com"}]
                assert drain() == []


            def test_nothing_leaks_between_tests(jobqueue_service):
                assert enqueued() == []
            """
        )
    )
    result = suite.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=6)


def test_assert_enqueued_failure_lists_what_was_enqueued(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        textwrap.dedent(
            """
            import jobqueue
            from jobworker_pg.pytest_plugin import assert_enqueued


            def test_wrong_payload(jobqueue_service):
                jobqueue.add(jobqueue.new_job("email.send", "signup", {"to": "a@example.com"}))
                jobqueue.add(jobqueue.new_job("report.build", "nightly", [1, 2]))
                assert_enqueued("email.send", {"to": "z@example.com"})


            def test_wrong_count(jobqueue_service):
                jobqueue.add(jobqueue.new_job("email.send", "signup", {"to": "a@example.com"}))
                assert_enqueued("email.send", count=2)
            """
        )
    )
    result = suite.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: no job with type 'email.send' and payload {'to': 'z@example.com'} was enqueued;"
            " enqueued jobs (2):",
            "*- email.send {'to': 'a@example.com'} (pending, id *)",
            "*- report.build [[]1, 2] (pending, id *)",
            "*AssertionError: expected 2 job(s) with type 'email.send', found 1; enqueued jobs (1):",
        ]
    )


def _readme_plugin_snippet() -> str:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    marker = "<!-- readme-test: skip (a test module: tests/test_pytest_plugin.py runs it with pytester) -->"
    block = readme.split(marker, 1)[1]
    return block.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_snippet_passes_as_written(
    pytester: pytest.Pytester, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQUEUE_TEST_DATABASE_URL", pg_server.admin_url)
    pytester.makepyfile(test_readme_snippet=_readme_plugin_snippet())  # no conftest: the snippet is whole
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=1)


def test_drain_warns_about_due_jobs_of_unregistered_types(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        textwrap.dedent(
            """
            import pytest
            import jobqueue
            from jobworker_pg.pytest_plugin import UnservedJobsWarning, drain


            def test_unregistered(jobqueue_service):
                jobqueue.add(jobqueue.new_job("email.sned", "signup", {"to": "a@example.com"}))
                with pytest.warns(UnservedJobsWarning, match="1 of type 'email.sned'"):
                    assert drain() == []
            """
        )
    )
    result = suite.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=1)


def test_embedded_fixture_warns_nothing_and_leaves_no_directory(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOBQUEUE_TEST_DATABASE_URL", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)  # what makes platformdirs warn
    scratch = Path(tempfile.mkdtemp(prefix="jq-", dir="/tmp"))  # short: the server's socket lives here
    monkeypatch.setenv("TMPDIR", str(scratch))
    pytester.makepyfile(
        textwrap.dedent(
            """
            import jobqueue


            def test_embedded(jobqueue_service):
                assert jobqueue.add(jobqueue.new_job("t", "o", {})).created_at is not None
            """
        )
    )
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=1)
    try:
        assert list(scratch.glob("jobqueue-pytest-*")) == []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
