"""The notification listener: the LISTEN self-test and the polling fallback."""

from __future__ import annotations

import logging
import threading

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
