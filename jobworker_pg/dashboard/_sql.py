"""The named blocks of ``dashboard/queries.sql``, parsed once at import like ``queries.sql``."""

from __future__ import annotations

from importlib import resources
from typing import LiteralString

from jobworker_pg._queries import parse

QUERIES: dict[str, str] = parse(resources.files(__package__).joinpath("queries.sql").read_text())


def dq(name: str) -> LiteralString:
    """The SQL of dashboard query ``name``; it comes from our own file, never from input."""
    return QUERIES[name]
