"""Fixtures of the fault-injection suite (``pytest -m faults tests/faults``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faultkit import Fleet, report_path
from processes import ThrowawayPostgres


def pytest_configure(config: pytest.Config) -> None:
    # Until pyproject.toml registers it; registering twice is harmless.
    config.addinivalue_line("markers", "faults: fault-injection scenarios (tests/faults), minutes long")


@pytest.fixture(scope="session", autouse=True)
def _fresh_report() -> None:
    """Start every session with an empty figures report."""
    path = report_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("", encoding="utf-8")


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    workers = Fleet()
    try:
        yield workers
    finally:
        workers.close()


@pytest.fixture
def throwaway() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL server of this test's own, which it may stop and restart."""
    pg = ThrowawayPostgres()
    try:
        yield pg
    finally:
        pg.cleanup()
