"""The dashboard over HTTP against a real server and database: authentication, CSRF,
read-only mode, mounting under a prefix, keyset pagination, estimates, /metrics, the CLI's
refusal to serve a non-loopback address without a password, and the worker registry."""

from __future__ import annotations

import base64
import html
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from dashboard_server import free_port, serve_asgi, serve_dashboard
from helpers import wait_for
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Mount
from test_cli import start_worker, stop_worker

import jobqueue
from jobworker import Registry, WorkerPool, WorkerSettings
from jobworker_pg import PostgresService, ProcessRegistry
from jobworker_pg.cli import cli
from jobworker_pg.dashboard import _data, create_app
from jobworker_pg.dashboard._sql import dq
from jobworker_pg.metrics import WorkerMetrics

PASSWORD = "correct horse"
SETTINGS = WorkerSettings().replace(heartbeat_interval=0.2, dead_for=2, job_timeout=30)


def basic(password: str, user: str = "admin") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def base(db_url: str) -> Iterator[str]:
    with serve_dashboard(db_url) as url:
        yield url


def csrf_of(client: httpx.Client, url: str) -> str:
    page = client.get(url)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "the page has no CSRF field"
    return match.group(1)


def test_every_page_answers(base: str, service: PostgresService) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", {"a": 1}))
    bundle = service.add_job_bundle(
        jobqueue.new_job_bundle("b", "o", [jobqueue.JobDesc(type="t", payload=1)])
    )
    with httpx.Client(base_url=base, follow_redirects=True) as client:
        for path in ["/", "/overview/live", "/jobs", f"/jobs/{job.id}", "/bundles", f"/bundles/{bundle.id}"]:
            assert client.get(path).status_code == 200, path
        for path in ["/workers", "/periodic", "/bulk", "/metrics", "/static/dashboard.js"]:
            assert client.get(path).status_code == 200, path
        for state in ("all", "waiting", "running", "failed", "succeeded"):
            assert client.get("/jobs", params={"state": state}).status_code == 200
        assert client.get("/jobs", params={"state": "bogus"}).status_code == 400
        assert client.get(f"/jobs/{uuid.uuid4()}").status_code == 404
        found = client.get("/jobs", params={"id": str(job.id)})
        assert found.status_code == 200 and str(job.id) in found.text


def test_password_is_required_when_set(db_url: str) -> None:
    with serve_dashboard(db_url, password=PASSWORD) as base, httpx.Client(base_url=base) as client:
        missing = client.get("/")
        assert missing.status_code == 401 and "Basic" in missing.headers["www-authenticate"]
        assert client.get("/", headers=basic("wrong")).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 401
        assert client.get("/static/dashboard.css").status_code == 401
        assert client.get("/", headers=basic(PASSWORD)).status_code == 200


def test_post_without_the_csrf_token_is_refused_and_changes_nothing(
    base: str, service: PostgresService
) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", None))
    with httpx.Client(base_url=base, follow_redirects=True) as client:
        token = csrf_of(client, f"/jobs/{job.id}")
        assert client.post(f"/jobs/{job.id}/delete").status_code == 403
        assert client.post(f"/jobs/{job.id}/delete", data={"csrf_token": "forged"}).status_code == 403
        # a token without its cookie (another site cannot read or send the cookie)
        with httpx.Client(base_url=base) as other:
            assert other.post(f"/jobs/{job.id}/delete", data={"csrf_token": token}).status_code == 403
        assert service.get_job(job.id).id == job.id
        done = client.post(f"/jobs/{job.id}/cancel", data={"csrf_token": token})
        assert done.status_code == 200 and "Done: cancel" in done.text
        assert service.get_job(job.id).cancelled_at is not None
        deleted = client.post(f"/jobs/{job.id}/delete", data={"csrf_token": token})
        assert deleted.status_code == 200 and "Done: deleted" in deleted.text
        assert "Done: <b>" not in client.get("/jobs", params={"done": "<b>"}).text
    with pytest.raises(jobqueue.JobNotFoundError):
        service.get_job(job.id)


def test_read_only_shows_no_action_and_refuses_them(db_url: str, service: PostgresService) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", None))
    with serve_dashboard(db_url, read_only=True) as base, httpx.Client(base_url=base) as client:
        page = client.get(f"/jobs/{job.id}")
        assert "read-only" in page.text
        assert '<form method="post"' not in page.text and "csrf_token" not in page.text
        client.get("/")  # gets the cookie
        token = client.cookies.get("jobqueue_csrf")
        assert token
        for path, data in [
            (f"/jobs/{job.id}/delete", {}),
            (f"/jobs/{job.id}/cancel", {}),
            ("/bulk/retry-failed", {"type": "t", "confirm": "yes"}),
            ("/bulk/delete-finished", {"days": "0", "confirm": "yes"}),
        ]:
            assert client.post(path, data={"csrf_token": token, **data}).status_code == 403, path
    assert service.get_job(job.id).cancelled_at is None


def test_mounted_under_a_prefix_links_stay_under_it(db_url: str, service: PostgresService) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", None))
    dashboard = create_app(db_url)
    host = Starlette(routes=[Mount("/admin/queue", app=dashboard)])
    try:
        with serve_asgi(host) as base, httpx.Client(base_url=base) as client:
            page = client.get("/admin/queue/")
            assert page.status_code == 200
            hrefs = re.findall(r'(?:href|src|action)="([^"]+)"', page.text)
            assert hrefs and all(h.startswith(f"{base}/admin/queue/") for h in hrefs if "://" in h), hrefs
            assert client.get(f"/admin/queue/jobs/{job.id}").status_code == 200
            assert client.get("/admin/queue/static/dashboard.css").status_code == 200
    finally:
        dashboard.state.dashboard.close()


def test_jobs_pages_by_keyset_without_repeats(base: str, service: PostgresService) -> None:
    added = service.add_jobs([jobqueue.new_job("t", "o", i) for i in range(120)])
    seen: list[str] = []
    with httpx.Client(base_url=base, follow_redirects=True) as client:
        url: str | None = "/jobs?type=t"
        while url:
            page = client.get(url)
            seen += re.findall(r'class="mono" href="[^"]*/jobs/([0-9a-f-]{36})"', page.text)
            more = re.search(r'class="next" href="[^"]*?(/jobs\?[^"]+)"', page.text)
            url = more.group(1).replace("&amp;", "&") if more else None
    assert len(seen) == 120 and set(seen) == {str(j.id) for j in added}


def test_huge_totals_are_planner_estimates_and_say_so(
    base: str, service: PostgresService, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = service.add_jobs([jobqueue.new_job("t", "o", i) for i in range(30)])
    with psycopg.connect(service.conninfo, autocommit=True) as conn:
        conn.execute("update worker.job set stopped_at = now() where id = any(%s)", ([j.id for j in jobs],))
        conn.execute("analyze worker.job")
    with httpx.Client(base_url=base, follow_redirects=True) as client:
        assert "≈" not in client.get("/").text
        monkeypatch.setattr(_data, "EXACT_COUNT_CAP", 10)
        page = client.get("/").text
    assert "planner estimate" in page and "≈ 30" in page


def test_metrics_endpoint_counts_jobs_by_type_and_state(base: str, service: PostgresService) -> None:
    service.add_jobs([jobqueue.new_job("mail", "o", i) for i in range(3)])
    with httpx.Client(base_url=base, follow_redirects=True) as client:
        text = client.get("/metrics").text
    assert 'jobqueue_jobs{state="pending",type="mail"} 3.0' in text


def test_no_password_of_the_database_url_in_pages_or_logs(
    pg_server: object, db_url: str, service: PostgresService, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "S3cret-" + uuid.uuid4().hex[:8]
    role = "dash_" + uuid.uuid4().hex[:8]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"create role {role} login superuser password '{secret}'")
    url = psycopg.conninfo.make_conninfo(db_url, user=role, password=secret)
    job = service.add_job(jobqueue.new_job("t", "o", None))
    caplog.set_level(logging.DEBUG)
    try:
        with serve_dashboard(url) as base, httpx.Client(base_url=base) as client:
            for path in [
                "/",
                f"/jobs/{job.id}",
                "/jobs",
                "/bundles",
                "/workers",
                "/bulk",
                "/metrics",
                "/nope",
            ]:
                assert secret not in client.get(path).text
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f"drop owned by {role}")
            conn.execute(f"drop role {role}")
    assert secret not in caplog.text


def test_cli_refuses_a_public_address_without_a_password(
    monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    monkeypatch.delenv("JOBQUEUE_DASHBOARD_PASSWORD", raising=False)
    result = CliRunner().invoke(cli, ["--database-url", db_url, "dashboard", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "refusing to serve the dashboard on 0.0.0.0 without a password" in result.output
    assert "JOBQUEUE_DASHBOARD_PASSWORD" in result.output


def test_bulk_retry_asks_for_confirmation_then_resets_failed_jobs(
    base: str, service: PostgresService
) -> None:
    jobs = service.add_jobs([jobqueue.new_job("flaky", "o", i) for i in range(3)])
    with psycopg.connect(service.conninfo, autocommit=True) as conn:
        conn.execute(
            "update worker.job set started_at = now(), stopped_at = now(), error_msg = 'boom'"
            " where id = any(%s)",
            ([j.id for j in jobs],),
        )
    with httpx.Client(base_url=base, follow_redirects=True) as client:
        token = csrf_of(client, "/bulk")
        confirm = client.post("/bulk/retry-failed", data={"csrf_token": token, "type": "flaky"})
        assert "Retry 3 failed jobs of type" in confirm.text
        assert all(service.get_job(j.id).stopped for j in jobs)
        done = client.post(
            "/bulk/retry-failed", data={"csrf_token": token, "type": "flaky", "confirm": "yes"}
        )
        assert "Done: retried 3" in done.text
    assert not any(service.get_job(j.id).stopped for j in jobs)


def test_worker_processes_register_beat_and_leave(base: str, service: PostgresService) -> None:
    registry = Registry()
    registry.register("t", lambda job: None)
    pool = WorkerPool(service, registry, SETTINGS, name="dash-registry")
    observer = ProcessRegistry(service.conninfo)
    pool.add_observer(observer)
    pool.start_threads(3)
    try:
        with httpx.Client(base_url=base, follow_redirects=True) as client:
            page = client.get("/workers").text  # registered as the pool started
            assert "<td>3</td>" in page and "(stale)" not in page
        with psycopg.connect(service.conninfo) as conn:
            assert conn.execute("select threads, job_types from worker.worker_process").fetchall() == [
                (3, ["t"])
            ]
    finally:
        pool.finish_threads(10)
    with psycopg.connect(service.conninfo) as conn:
        assert conn.execute("select count(*) from worker.worker_process").fetchone() == (0,)


def test_worker_metrics_count_attempts_by_outcome(service: PostgresService) -> None:
    registry = Registry()

    def handle(job: jobqueue.Job) -> None:
        if job.payload == "bad":
            raise ValueError("bad payload")

    registry.register("m", handle)
    metrics_registry = CollectorRegistry()
    pool = WorkerPool(service, registry, SETTINGS, name="dash-metrics")
    pool.add_observer(WorkerMetrics(metrics_registry))
    service.add_jobs([jobqueue.new_job("m", "o", "ok"), jobqueue.new_job("m", "o", "bad")])
    pool.start_threads(2)
    try:
        value = metrics_registry.get_sample_value
        wait_for(lambda: value("jobqueue_jobs_failed_total", {"type": "m"}) == 1, 20, "the failure counted")
        wait_for(
            lambda: value("jobqueue_jobs_succeeded_total", {"type": "m"}) == 1, 20, "the success counted"
        )
        assert value("jobqueue_jobs_started_total", {"type": "m"}) == 2
        assert value("jobqueue_job_run_seconds_count", {"type": "m"}) == 2
        assert value("jobqueue_job_pickup_seconds_count", {"type": "m"}) == 2
        assert (value("jobqueue_claim_seconds_count") or 0) >= 1
        wait_for(lambda: (value("jobqueue_save_outcomes_seconds_count") or 0) >= 1, 20, "a save timed")
    finally:
        pool.finish_threads(10)


def _metrics_text(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.TransportError:
        return None  # not listening yet


def test_cli_worker_serves_its_metrics_and_registers_its_process(
    db_url: str, service: PostgresService
) -> None:
    port = free_port()
    job = service.add_job(jobqueue.new_job("cli.ok", "test", {"i": 1}))
    proc = start_worker(db_url, "cli_app", "--threads", "2", "--metrics-port", str(port))
    try:
        wait_for(lambda: service.get_job(job.id).stopped, 30, "the worker ran the job")
        text = wait_for(lambda: _metrics_text(f"http://127.0.0.1:{port}/metrics"), 30, "metrics served")
        assert 'jobqueue_jobs_succeeded_total{type="cli.ok"} 1.0' in text
        with psycopg.connect(db_url) as conn:
            rows = conn.execute("select pid, threads, job_types from worker.worker_process").fetchall()
        assert rows == [(proc.pid, 2, ["cli.fail", "cli.ok", "cli.slow"])]
        code, out = stop_worker(proc)
    finally:
        proc.kill()
        proc.wait()
    assert code == 0, out
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from worker.worker_process").fetchone() == (0,)


def test_bundle_page_shows_progress_and_the_completion_job(base: str, service: PostgresService) -> None:
    with psycopg.connect(service.conninfo, autocommit=True) as conn:
        conn.execute("insert into worker.bundle_handler (bundle_type) values ('report')")
    bundle = service.add_job_bundle(
        jobqueue.new_job_bundle("report", "o", [jobqueue.JobDesc(type="part", payload=i) for i in range(3)])
    )
    with httpx.Client(base_url=base) as client:
        page = client.get(f"/bundles/{bundle.id}").text
        assert "0 / 3 stopped" in page and "none run" in page
        with psycopg.connect(service.conninfo, autocommit=True) as conn:
            # Stopped as go-jobqueue stops them: the statement that ends a job counts it.
            conn.execute(
                "update worker.job set started_at = now(), stopped_at = now() where bundle_id = %s",
                (bundle.id,),
            )
            conn.execute(
                "update worker.job_bundle set num_jobs_stopped = num_jobs where id = %s", (bundle.id,)
            )
            (completion,) = conn.execute(
                "select id from worker.job where type = 'jobqueue.bundle:report'"
            ).fetchone() or (None,)
        assert completion is not None
        page = client.get(f"/bundles/{bundle.id}").text
    assert "3 / 3 stopped" in page and f"/jobs/{completion}" in page and "(not run yet)" in page


def test_periodic_page_lists_schedules_and_disables_and_runs_them(
    base: str, service: PostgresService
) -> None:
    with psycopg.connect(service.conninfo, autocommit=True) as conn:
        conn.execute(
            "insert into worker.schedule (name, schedule, job_type, created_at, seen_at)"
            " values ('nightly <b>report</b>', '0 3 * * *', 'reports.build', now(), now())"
        )
    with httpx.Client(base_url=base, follow_redirects=True) as client:
        token = csrf_of(client, "/bulk")
        page = client.get("/periodic").text
        assert "nightly &lt;b&gt;report&lt;/b&gt;" in page and "0 3 * * *" in page
        action = re.search(r'action="[^"]*(/periodic/[^"]+/disable)"', page)
        assert action
        disable = html.unescape(action.group(1))  # as a browser reads the attribute
        assert client.post(disable).status_code == 403  # no CSRF token
        done = client.post(disable, data={"csrf_token": token})
        assert "Done: disable nightly &lt;b&gt;report&lt;/b&gt;" in done.text
        assert not service.get_periodic("nightly <b>report</b>").enabled
        run = re.search(r'action="[^"]*(/periodic/[^"]+/run)"', done.text)
        assert run
        client.post(html.unescape(run.group(1)), data={"csrf_token": token})
    assert [j.type for j in service.get_all_jobs()] == ["reports.build"]


def test_queues_page_lists_rules_and_counts_and_pauses_and_resumes(
    base: str, current: PostgresService
) -> None:
    per_minute = jobqueue.RateLimit(10, timedelta(minutes=1))
    jobqueue.configure_queue("emails", concurrency=3, per_key_concurrency=1, rate_limit=per_minute)
    jobqueue.pause_queue("reports")
    current.add_job(jobqueue.new_job("t", "o", 1, queue="emails"))
    current.add_job(jobqueue.new_job("t", "o", 2, queue="emails"))
    current.add_job(jobqueue.new_job("t", "o", 3, queue="only-jobs"))
    with httpx.Client(base_url=base, follow_redirects=True) as client:
        token = csrf_of(client, "/queues")
        page = client.get("/queues").text
        cells = [
            re.sub(r"<[^>]+>", " ", m.group(1)).split()
            for m in re.finditer(r'<tr class="(?:paused|live)">(.*?)</tr>', page, re.S)
        ]
        rows = {row[0]: row for row in cells}
        assert sorted(rows) == ["emails", "only-jobs", "reports"]
        assert rows["emails"] == ["emails", "active", "3", "1", "10/60s", "2", "0", "Pause"]
        assert rows["reports"] == ["reports", "paused", "-", "-", "-", "0", "0", "Resume"]
        assert rows["only-jobs"][:7] == ["only-jobs", "active", "-", "-", "-", "1", "0"]
        assert re.search(r'href="[^"]*/jobs\?state=waiting&amp;queue=emails"', page)
        pause = client.post("/queues/emails/pause", data={"csrf_token": token})
        assert pause.status_code == 200 and "Done: pause emails." in pause.text
        assert jobqueue.get_queue("emails").paused
        assert jobqueue.get_queue("emails").concurrency == 3  # pausing keeps the limits
        resume = client.post("/queues/reports/resume", data={"csrf_token": token})
        assert "Done: resume reports." in resume.text
        assert not jobqueue.get_queue("reports").paused
        assert client.post("/queues/emails/launch", data={"csrf_token": token}).status_code == 404


def test_queue_actions_without_the_csrf_token_are_refused(base: str, current: PostgresService) -> None:
    jobqueue.configure_queue("emails", concurrency=2)
    with httpx.Client(base_url=base) as client:
        csrf_of(client, "/queues")  # a cookie, but no token in the form
        assert client.post("/queues/emails/pause").status_code == 403
        assert client.post("/queues/emails/pause", data={"csrf_token": "forged"}).status_code == 403
    assert not jobqueue.get_queue("emails").paused


def test_read_only_hides_and_refuses_queue_actions(db_url: str, current: PostgresService) -> None:
    jobqueue.configure_queue("emails", concurrency=2)
    jobqueue.pause_queue("reports")
    with serve_dashboard(db_url, read_only=True) as base, httpx.Client(base_url=base) as client:
        page = client.get("/queues").text
        assert "emails" in page and "reports" in page
        assert '<form method="post"' not in page and "Pause" not in page and "Resume" not in page
        token = client.cookies.get("jobqueue_csrf")
        assert token
        assert client.post("/queues/emails/pause", data={"csrf_token": token}).status_code == 403
        assert client.post("/queues/reports/resume", data={"csrf_token": token}).status_code == 403
    assert not jobqueue.get_queue("emails").paused and jobqueue.get_queue("reports").paused


def test_a_script_queue_name_is_escaped_and_its_actions_still_work(
    base: str, current: PostgresService
) -> None:
    name = "<script>alert(1)</script>"
    current.add_job(jobqueue.new_job("t", "o", None, queue=name))
    with httpx.Client(base_url=base, follow_redirects=True) as client:
        token = csrf_of(client, "/queues")
        page = client.get("/queues").text
        assert name not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        action = re.search(r'action="[^"]*(/queues/[^"]+/pause)"', page)
        assert action
        done = client.post(html.unescape(action.group(1)), data={"csrf_token": token})
        assert name not in done.text and "Done: pause &lt;script&gt;" in done.text
    assert jobqueue.get_queue(name).paused


def test_jobs_list_filters_by_queue(base: str, service: PostgresService) -> None:
    mine = service.add_job(jobqueue.new_job("t", "o", 1, queue="emails"))
    other = service.add_job(jobqueue.new_job("t", "o", 2))
    with httpx.Client(base_url=base) as client:
        for state in ["all", "waiting"]:
            page = client.get("/jobs", params={"queue": "emails", "state": state}).text
            assert str(mine.id) in page and str(other.id) not in page, state
        assert str(mine.id) not in client.get("/jobs", params={"queue": "default"}).text


def test_queue_counts_read_no_finished_jobs(service: PostgresService) -> None:
    with psycopg.connect(service.conninfo, autocommit=True) as conn:
        conn.execute("set enable_seqscan = off")  # a tiny test table would be scanned anyway
        plan = "\n".join(row[0] for row in conn.execute("explain " + dq("dash_queues")))
    # Waiting jobs through the claim's index, running ones through the reaper's: with a
    # million finished jobs the page still reads only the unfinished ones.
    assert "job_queue_available_idx" in plan and "job_running_idx" in plan, plan
    assert "Seq Scan on job " not in plan, plan
