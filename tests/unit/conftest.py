"""Fixtures for the worker runtime's unit tests: a fake database, a registry, a fast pool."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes import FAST, FakeDatabase, Gates

from jobworker import Registry, WorkerPool


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def pool(db: FakeDatabase, registry: Registry) -> Iterator[WorkerPool]:
    pool = WorkerPool(db, registry, FAST, name="jobworker-test")
    errors: list[BaseException] = []
    pool.on_error(errors.append)
    yield pool
    pool.stop_threads()


@pytest.fixture
def gates() -> Iterator[Gates]:
    gates = Gates()
    yield gates
    gates.open_all()
