"""The named SQL blocks of ``queries.sql``, parsed once at import."""

from __future__ import annotations

import re
from importlib import resources
from typing import LiteralString

_HEADER = re.compile(r"^-- ([a-z_]+): (.+)$")


def parse(text: str) -> dict[str, str]:
    """Split ``text`` into ``{name: sql}`` at lines ``-- name: description``.

    Comment lines before the first block are the file's preamble and dropped.
    """
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            name = match.group(1)
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice")
            current = queries[name] = []
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in queries.items()}


QUERIES: dict[str, str] = parse(resources.files(__package__).joinpath("queries.sql").read_text())


def q(name: str) -> LiteralString:
    """The SQL of query ``name``; it comes from our own file, never from input."""
    return QUERIES[name]
