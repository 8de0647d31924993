"""``jobqueue queues ...`` and ``jobqueue worker --queue``, driven as subprocesses."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from helpers import wait_for
from test_cli import ok, run_cli, start_worker, stop_worker

import jobqueue
from jobqueue import RateLimit
from jobworker_pg import PostgresService


@pytest.fixture
def svc(db_url: str) -> Iterator[PostgresService]:
    service = PostgresService(db_url)
    try:
        yield service
    finally:
        service.close()


@pytest.mark.parametrize("command", [["queues"], ["queues", "list"], ["queues", "configure"]])
def test_help_of_the_queues_commands(command: list[str]) -> None:
    assert "Usage:" in ok(run_cli(*command, "--help"))


def test_queues_configure_pause_resume_and_list(db_url: str, svc: PostgresService) -> None:
    svc.add_jobs([jobqueue.new_job("t", "test", i, queue="emails") for i in range(3)])
    out = json.loads(
        ok(
            run_cli(
                "queues",
                "configure",
                "emails",
                "--concurrency",
                "5",
                "--rate-limit",
                "100/s",
                "--json",
                url=db_url,
            )
        )
    )
    assert out == {
        "name": "emails",
        "paused": False,
        "concurrency": 5,
        "per_key_concurrency": None,
        "rate_limit": {"count": 100, "per_seconds": 1.0},
        "waiting": 0,
        "running": 0,
    }
    assert "paused" in ok(run_cli("queues", "pause", "emails", url=db_url))
    assert svc.list_queues()[0].paused
    table = ok(run_cli("queues", "list", url=db_url))
    assert table.splitlines()[0].split() == [
        "queue", "state", "concurrency", "per", "key", "rate", "limit", "waiting", "running"
    ]  # fmt: skip
    assert table.splitlines()[2].split() == ["emails", "paused", "5", "100/1s", "3", "0"]
    ok(run_cli("queues", "resume", "emails", url=db_url))
    ok(run_cli("queues", "configure", "emails", "--no-rate-limit", "--per-key", "2", url=db_url))
    (info,) = svc.list_queues()
    assert (info.paused, info.concurrency, info.per_key_concurrency, info.rate_limit) == (False, 5, 2, None)
    listed = json.loads(ok(run_cli("queues", "list", "--json", url=db_url)))
    assert [q["name"] for q in listed] == ["emails"] and listed[0]["waiting"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "0 is not in the range"),
        (["--rate-limit", "fast"], "is not COUNT/DURATION"),
        (["--concurrency", "2", "--no-concurrency"], "exclude each other"),
    ],
)
def test_queues_configure_refuses_bad_options(db_url: str, args: list[str], message: str) -> None:
    result = run_cli("queues", "configure", "q", *args, url=db_url)
    assert result.returncode == 2 and message in result.stderr


def test_jobs_and_show_print_the_queue_and_meta(db_url: str, svc: PostgresService) -> None:
    job = svc.add_job(jobqueue.new_job("t", "test", 1, queue="emails", meta={"trace": "abc"}, timeout=5))
    assert "emails" in ok(run_cli("jobs", url=db_url))
    shown = ok(run_cli("show", str(job.id), url=db_url))
    assert "queue:" in shown and "emails" in shown and '{"trace": "abc"}' in shown and "0:00:05" in shown
    as_json = json.loads(ok(run_cli("show", str(job.id), "--json", url=db_url)))
    assert (as_json["queue"], as_json["meta"]) == ("emails", {"trace": "abc"})


def test_worker_serves_the_queues_given_with_weights(db_url: str, svc: PostgresService) -> None:
    svc.configure_queue("limited", rate_limit=RateLimit(1000))
    jobs = [
        svc.add_job(jobqueue.new_job("cli.ok", "test", {"q": q}, queue=q)) for q in ("critical", "limited")
    ]
    ignored = svc.add_job(jobqueue.new_job("cli.ok", "test", {"q": "default"}))
    proc = start_worker(db_url, "cli_app", "--queue", "critical:10", "--queue", "limited:1")
    try:
        wait_for(lambda: all(svc.get_job(j.id).stopped for j in jobs), timeout=30)
        code, out = stop_worker(proc)
    finally:
        proc.kill()
        proc.wait()
    assert code == 0, out
    assert "queues: critical:10, limited:1" in out
    assert not svc.get_job(ignored.id).started


def test_worker_refuses_a_mix_of_weighted_and_plain_queues(db_url: str) -> None:
    result = run_cli("worker", "cli_app", "--queue", "a:2", "--queue", "b", url=db_url)
    assert result.returncode == 2 and "give every --queue a weight" in result.stderr
