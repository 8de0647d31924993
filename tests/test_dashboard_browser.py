"""The dashboard in a real browser (Debian's headless Chromium through Playwright): a failed
job retried from its page, passwords, CSRF, read-only mode, and user data that must never run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from browser import chromium
from dashboard_server import serve_dashboard
from helpers import wait_for
from playwright.sync_api import Error as PlaywrightError
from psycopg.types.json import Jsonb

import jobqueue
from jobworker import Registry, WorkerPool, WorkerSettings
from jobworker_pg import PostgresService

SETTINGS = WorkerSettings().replace(heartbeat_interval=0.2, dead_for=2, job_timeout=30)
PASSWORD = "s3cret pass"
# Each would set window.__pwned if the page let it run.
EVIL = [
    "<script>window.__pwned = 'script'</script>",
    "<img src=x onerror=\"window.__pwned = 'img'\">",
    '"><svg onload="window.__pwned = \'svg\'">',
    "</pre><script>window.__pwned = 'pre'</script>",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def test_a_failed_job_retried_from_its_page_then_shows_succeeded(
    db_url: str, service: PostgresService, browser: Any
) -> None:
    registry = Registry()
    attempts: list[int] = []
    fail_first = threading.Event()
    fail_first.set()

    def flaky(job: jobqueue.Job) -> str:
        attempts.append(job.attempt)
        if fail_first.is_set():
            fail_first.clear()
            raise RuntimeError("the mail server said no")
        return "sent"

    registry.register("mail.send", flaky)
    pool = WorkerPool(service, registry, SETTINGS, name="dash-browser")
    pool.start_threads(1)
    try:
        job = service.add_job(jobqueue.new_job("mail.send", "signup", {"to": "a@example.com"}))
        wait_for(lambda: service.get_job(job.id).stopped, 20, "the first attempt fails")
        assert service.get_job(job.id).error_msg == "the mail server said no"
        with serve_dashboard(db_url, password=PASSWORD) as base:
            context = browser.new_context(http_credentials={"username": "ops", "password": PASSWORD})
            page = context.new_page()
            page.goto(f"{base}/jobs?state=failed")
            page.click(f"a[href$='/jobs/{job.id}']")
            assert page.inner_text("h1 .state") == "failed"
            assert "the mail server said no" in page.inner_text("#error")
            page.click("#retry")
            assert "Done: retry" in page.inner_text(".flash")
            wait_for(lambda: service.get_job(job.id).succeeded, 20, "the retried attempt succeeds")
            page.reload()
            assert page.inner_text("h1 .state") == "succeeded"
            assert '"sent"' in page.inner_text("#result")
            context.close()
    finally:
        pool.finish_threads(10)
    assert attempts == [1, 1]  # a reset starts the attempts again


def test_wrong_and_missing_passwords_are_refused(db_url: str, browser: Any) -> None:
    with serve_dashboard(db_url, password=PASSWORD) as base:
        for credentials in (None, {"username": "ops", "password": "wrong"}):
            context = browser.new_context(http_credentials=credentials)
            # Headless, the browser cannot ask for a password: it shows the 401 or gives up on it.
            try:
                status = context.new_page().goto(base + "/").status
            except PlaywrightError as exc:
                assert "ERR_INVALID_AUTH_CREDENTIALS" in str(exc)
                status = 401
            assert status == 401
            response = context.request.get(base + "/jobs")
            assert response.status == 401 and response.text() == "authentication required"
            context.close()
        context = browser.new_context(http_credentials={"username": "anyone", "password": PASSWORD})
        assert context.new_page().goto(base + "/").status == 200
        context.close()


def test_csrf_less_posts_are_refused(db_url: str, service: PostgresService, browser: Any) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", None))
    with serve_dashboard(db_url) as base:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{base}/jobs/{job.id}")  # sets the CSRF cookie: still not enough
        response = page.request.post(f"{base}/jobs/{job.id}/delete", form={"confirm": "yes"})
        assert response.status == 403
        page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(i => i.value = 'forged')")
        page.on("dialog", lambda dialog: dialog.accept())
        with page.expect_navigation():
            page.click("#delete")
        assert page.inner_text("#message").startswith("missing or wrong CSRF token")
        context.close()
    assert service.get_job(job.id).id == job.id


def test_read_only_mode_shows_no_actions_and_refuses_them(
    db_url: str, service: PostgresService, browser: Any
) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", None))
    with serve_dashboard(db_url, read_only=True) as base:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{base}/jobs/{job.id}")
        assert page.locator("button").count() == 0 and page.locator("form[method=post]").count() == 0
        assert page.inner_text(".badge") == "read-only"
        page.goto(f"{base}/bulk")
        assert page.locator("form[method=post]").count() == 0
        cookie = next(c["value"] for c in context.cookies() if c["name"] == "jobqueue_csrf")
        response = page.request.post(f"{base}/jobs/{job.id}/cancel", form={"csrf_token": cookie})
        assert response.status == 403 and "read-only" in response.text()
        context.close()
    assert service.get_job(job.id).cancelled_at is None


def test_script_laden_user_data_never_runs(db_url: str, service: PostgresService, browser: Any) -> None:
    jobs = []
    for i, evil in enumerate(EVIL):
        jobs.append(
            service.add_job(
                jobqueue.new_job(f"t{i}{evil}"[:100], f"o{evil}"[:100], {"html": evil, evil: [evil]})
            )
        )
    bundle = service.add_job_bundle(
        jobqueue.new_job_bundle(
            EVIL[0][:100], EVIL[1][:100], [jobqueue.JobDesc(type=EVIL[2][:100], payload=EVIL[3])]
        )
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "update worker.job set started_at = now(), stopped_at = now(), attempt = 1, error_msg = %s,"
            " error_data = %s, result = %s,"
            " errors = jsonb_build_array(jsonb_build_object('attempt', 1, 'at', now(), 'message', %s::text,"
            " 'type', %s::text))"
            " where id = %s",
            (EVIL[3], Jsonb({"traceback": EVIL[0]}), Jsonb(EVIL[1]), EVIL[2], EVIL[0], jobs[0].id),
        )
    with serve_dashboard(db_url, refresh_seconds=1) as base:
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        paths = ["/", "/jobs", "/jobs?state=failed", "/bundles", f"/bundles/{bundle.id}"]
        paths += [f"/jobs/{j.id}" for j in jobs]
        for path in paths:
            page.goto(base + path)
            assert page.evaluate("window.__pwned") is None, path
        page.goto(base + "/")
        # the live refresh swaps in a fresh fragment (without a reload): still inert
        page.evaluate("document.querySelector('.updated').dataset.old = 'yes'")
        swapped = "!document.querySelector('.updated').dataset.old"
        wait_for(lambda: page.evaluate(swapped), 15, "the live refresh swaps the fragment")
        assert page.evaluate("window.__pwned") is None
        assert EVIL[0] in page.inner_text("table")  # shown as text
        page.goto(f"{base}/jobs/{jobs[0].id}")
        assert page.inner_text("#error") == EVIL[3]
        assert EVIL[0] in page.inner_text("#payload")
        assert page.evaluate("window.__pwned") is None
        assert errors == []
        context.close()


def test_a_queue_paused_from_the_queues_page_stays_paused(
    db_url: str, service: PostgresService, browser: Any
) -> None:
    name = EVIL[1]  # a queue name is user data too
    service.add_job(jobqueue.new_job("t", "o", None, queue=name))
    service.configure_queue("emails", concurrency=2)
    with serve_dashboard(db_url) as base:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{base}/")
        page.on("dialog", lambda dialog: dialog.accept())
        with page.expect_navigation():
            page.click("nav >> text=Queues")
        row = page.locator("tr", has_text=name)
        assert row.locator("td").nth(1).inner_text() == "active"
        with page.expect_navigation():
            row.locator("button.pause").click()
        assert page.inner_text(".flash") == f"Done: pause {name}."
        assert page.locator("tr", has_text=name).locator("td").nth(1).inner_text() == "paused"
        assert page.locator("tr", has_text=name).locator("button.resume").count() == 1
        assert page.evaluate("window.__pwned") is None
        context.close()
    assert {q.name: q.paused for q in service.list_queues()} == {"emails": False, name: True}
