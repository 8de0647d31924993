"""After an outage the service works again as soon as the server answers, not when its pool's
reconnect backoff next fires (tests/netproxy.py makes the outage, and ends it at an instant
of the test's choosing)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
from helpers import wait_for
from netproxy import NetProxy

from jobqueue import DatabaseError
from jobworker_pg import PostgresService

#: The first call after the outage answers within this long; the pool's next attempt after a
#: failed one is at least 0.9 s away (1 s backoff, 10 % jitter).
FIRST_CALL_SECONDS = 0.5


class AttemptFailed(logging.Handler):
    """Set when psycopg_pool reports a failed connection attempt."""

    def __init__(self) -> None:
        super().__init__()
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("error connecting"):
            self.event.set()


@pytest.fixture
def pool_attempts() -> Iterator[AttemptFailed]:
    handler = AttemptFailed()
    pool_logger = logging.getLogger("psycopg.pool")
    pool_logger.addHandler(handler)
    try:
        yield handler
    finally:
        pool_logger.removeHandler(handler)


@pytest.mark.timeout(60)
def test_the_first_call_after_an_outage_does_not_wait_for_the_pools_next_attempt(
    db_url: str, pool_attempts: AttemptFailed
) -> None:
    with NetProxy(db_url) as proxy, PostgresService(proxy.url, min_size=1, max_size=1) as svc:
        svc.get_status()
        proxy.down()
        with pytest.raises(DatabaseError):  # a call finds the server gone
            svc.get_status()
        pool_attempts.event.clear()
        assert pool_attempts.event.wait(10), "the pool made no connection attempt"
        proxy.up()  # right after a failed attempt: the pool's next one is a second away
        started = time.monotonic()
        svc.get_status()
        waited = time.monotonic() - started
        assert waited < FIRST_CALL_SECONDS, f"the first call after the outage took {waited:.2f} s"

        # The pool then takes over again: calls stop opening connections of their own.
        def served_by_the_pool() -> bool:
            before = proxy.accepted
            svc.get_status()
            return proxy.accepted == before

        wait_for(served_by_the_pool, 10, "a call served by the pool", interval=0.2)
        accepted = proxy.accepted
        for _ in range(5):
            svc.get_status()
        assert proxy.accepted == accepted
