"""The notification listener: the LISTEN self-test and the polling fallback."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from jobworker_pg import NotificationListener


def test_listen_works_on_a_plain_server(db_url: str) -> None:
    listener = NotificationListener(db_url)
    woken = threading.Event()
    listener.set_wakeup(lambda job_type: woken.set())
    try:
        assert listener.wait_connected(10)
        assert listener.listen_works is True
        assert woken.wait(5)  # the wake-up after connecting
    finally:
        listener.stop()


def test_without_working_listen_it_polls_and_says_so_once(
    db_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a PgBouncer in transaction pooling mode does to LISTEN: the probe never comes back.
    monkeypatch.setattr(NotificationListener, "_probe", lambda self, conn: False)
    listener = NotificationListener(db_url, fallback_poll_interval=0.05, ping_interval=0.2)
    wakeups: list[str | None] = []
    enough = threading.Event()

    def wake(job_type: str | None) -> None:
        wakeups.append(job_type)
        if len(wakeups) >= 6:
            enough.set()

    caplog.set_level(logging.WARNING, logger="jobworker_pg._listener")
    listener.set_wakeup(wake)
    try:
        assert enough.wait(10)
        assert listener.listen_works is False
    finally:
        listener.stop()
    assert set(wakeups) == {None}
    said = [r for r in caplog.records if "LISTEN/NOTIFY does not work" in r.getMessage()]
    assert len(said) == 1


class _RaisingOnError:
    """An on_error callback that raises every time; counts its calls."""

    def __init__(self, enough: int) -> None:
        self.calls = 0
        self._enough = enough
        self.reached = threading.Event()

    def __call__(self, exc: BaseException) -> None:
        self.calls += 1
        if self.calls >= self._enough:
            self.reached.set()
        raise RuntimeError("on_error broke")


def test_an_on_error_that_raises_does_not_stop_reconnecting() -> None:
    # Nothing listens on port 1: every connection attempt fails at once.
    on_error = _RaisingOnError(enough=3)
    listener = NotificationListener("postgresql://nobody@127.0.0.1:1/none", on_error=on_error)
    listener.set_wakeup(lambda job_type: None)
    try:
        assert on_error.reached.wait(10), f"on_error called {on_error.calls} times, then the thread died"
    finally:
        listener.stop()


def test_an_on_error_that_raises_does_not_kill_the_dispatcher(db_url: str) -> None:
    import jobqueue
    from jobworker_pg import PostgresService

    on_error = _RaisingOnError(enough=2)
    seen: list[str] = []
    both = threading.Event()

    class Failing:
        def on_job_stopped(self, job_id: object, job_type: str, origin: str, will_retry: bool) -> None:
            seen.append(job_type)
            if len(seen) == 2:
                both.set()
            raise ValueError("listener broke")

        def on_job_bundle_stopped(self, bundle_id: object, bundle_type: str, origin: str) -> None:
            pass

    service = PostgresService(db_url, on_error=on_error)
    try:
        service.add_listener(Failing())
        for name in ("first", "second"):
            job = service.add_job(jobqueue.new_job(name, "test", None))
            service.cancel_job(job.id)  # stops the job: a job_stopped notification
        assert both.wait(10), f"events delivered: {seen}"
        assert on_error.reached.wait(5)
    finally:
        service.close()


class _Blocking:
    """A ServiceListener that holds the dispatcher on its first event until ``gate`` opens."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()

    def on_job_stopped(self, job_id: object, job_type: str, origin: str, will_retry: bool) -> None:
        self.entered.set()
        assert self.gate.wait(30)

    def on_job_bundle_stopped(self, bundle_id: object, bundle_type: str, origin: str) -> None:
        pass


def _stop_event(n: int) -> str:
    import json
    import uuid

    return json.dumps({"id": str(uuid.uuid4()), "type": "t", "origin": f"o{n}", "willRetry": False})


def test_the_stop_event_queue_is_bounded_when_listeners_fall_behind() -> None:
    from jobworker_pg import _listener

    blocking = _Blocking()
    listener = NotificationListener("postgresql://nobody@127.0.0.1:1/none")
    listener.add_listener(blocking)
    try:
        listener._handle("job_stopped", _stop_event(0))  # the seam: as the LISTEN loop does
        assert blocking.entered.wait(10)  # the dispatcher is stuck in a slow listener
        for n in range(20_000):
            listener._handle("job_stopped", _stop_event(n))
        assert listener._events.qsize() <= _listener.MAX_QUEUED_EVENTS
        assert listener.dropped_events == 20_000 - _listener.MAX_QUEUED_EVENTS
    finally:
        blocking.gate.set()
        listener.stop()


def test_a_backlog_of_stop_events_is_read_in_one_query(db_url: str) -> None:
    from helpers import wait_for

    import jobqueue
    from jobworker_pg import PostgresService

    class CountingService:
        """The service, counting the reads the listener dispatcher makes."""

        def __init__(self, service: PostgresService) -> None:
            self.service = service
            self.reads = 0

        def get_job(self, job_id: Any) -> jobqueue.Job:
            self.reads += 1
            return self.service.get_job(job_id)

        def get_jobs(self, job_ids: Any) -> list[jobqueue.Job]:
            self.reads += 1
            return self.service.get_jobs(job_ids)

    heard: list[tuple[object, bool]] = []
    all_heard = threading.Event()

    def on_stopped(job: jobqueue.Job, will_retry: bool) -> None:
        heard.append((job.id, will_retry))
        if len(heard) == 31:  # every job of the test
            all_heard.set()

    with PostgresService(db_url) as service:
        counting = CountingService(service)
        blocking = _Blocking()
        service.add_listener(blocking)
        service.add_listener(jobqueue.ListenerDispatcher(counting))  # type: ignore[arg-type]
        jobqueue.add_job_stopped_listener(on_stopped)
        try:
            jobs = service.add_jobs([jobqueue.new_job("t", "o", i) for i in range(31)])
            service.cancel_job(jobs[0].id)  # the first event holds the dispatcher
            assert blocking.entered.wait(10)
            for job in jobs[1:]:
                service.cancel_job(job.id)  # each stops a job: a job_stopped notification
            wait_for(lambda: service.listener._events.qsize() >= 30, 10, "the backlog queued")
            blocking.gate.set()
            assert all_heard.wait(10)
        finally:
            blocking.gate.set()
            jobqueue.remove_job_stopped_listener(on_stopped)
    assert sorted(map(str, (i for i, _ in heard))) == sorted(str(j.id) for j in jobs)
    assert counting.reads <= 2  # the first event, then the whole backlog in one read
