"""queries.sql: every named block parses and is used by the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobworker_pg._queries import QUERIES, parse

PACKAGE = Path(__file__).parent.parent / "jobworker_pg"


def test_every_named_query_is_used() -> None:
    code = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    used = set(re.findall(r'\bq\("([a-z_]+)"\)', code))
    assert set(QUERIES) - used == set()
    assert used - set(QUERIES) == set()


def test_every_dashboard_query_is_used() -> None:
    from jobworker_pg.dashboard._sql import QUERIES as DASHBOARD_QUERIES

    code = "\n".join(p.read_text() for p in (PACKAGE / "dashboard").rglob("*.py"))
    used = set(re.findall(r'\bdq\("([a-z_]+)"\)', code))
    assert set(DASHBOARD_QUERIES) - used == set()
    assert used - set(DASHBOARD_QUERIES) == set()


def test_parse_rejects_a_name_defined_twice() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse("-- a: one\nselect 1\n-- a: two\nselect 2\n")


def test_parse_splits_blocks_and_drops_the_preamble() -> None:
    assert parse("-- preamble\n\n-- one: why\nselect 1\n\n-- two: why\nselect 2\n") == {
        "one": "select 1",
        "two": "select 2",
    }


def test_the_job_reads_select_the_same_columns() -> None:
    # job_from_row decodes both; a column added to one only breaks the listener's batch read.
    def columns(name: str) -> str:
        return " ".join(re.split(r"\bfrom\b", QUERIES[name])[0].split())

    assert columns("get_jobs") == columns("get_job")
