"""PostgresService in a process with many open files."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator

import pytest

import jobqueue
from jobworker_pg import PostgresService

OPEN_FILES = 1_100


@pytest.fixture
def many_open_files() -> Iterator[None]:
    """Hold OPEN_FILES descriptors open, so that new connections get numbers >= 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < OPEN_FILES + 100:
        if hard != resource.RLIM_INFINITY and hard < OPEN_FILES + 100:
            pytest.skip(f"the hard limit of open files is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES + 100, hard))
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(OPEN_FILES)]
    try:
        yield
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_checkouts_work_with_descriptors_above_1024(db_url: str, many_open_files: None) -> None:
    with PostgresService(db_url, min_size=1, max_size=2) as service:
        for _ in range(3):  # the pool checks each connection it lends
            job = service.add_job(jobqueue.new_job("fds.t", "test", None))
            assert service.get_job(job.id).id == job.id
