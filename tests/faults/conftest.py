"""Fixtures of the fault-injection suite (``pytest -m faults tests/faults``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faultkit import Fleet, report_path


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
