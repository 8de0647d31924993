"""The revision chain of the ``worker`` schema, read without alembic.

Each revision module in ``migrations/versions/`` names its SQL script in a module-level
``UPGRADE_SQL = "000N_what.sql"`` (a file in ``versions/sql/``) and runs it in
``upgrade()``. ``install_schema`` runs the same scripts in chain order, so a database
is upgraded the same way whether alembic or install_schema does it. The modules are
parsed, not imported: importing them would import alembic and SQLAlchemy (about a second).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

_VERSIONS = Path(__file__).parent / "migrations" / "versions"


class RevisionChainError(RuntimeError):
    """The shipped revisions do not form one chain, or one lacks its ``UPGRADE_SQL``."""


@dataclass(frozen=True)
class Revision:
    """One revision: its id, the one before it (None for the root) and its SQL script."""

    id: str
    down_revision: str | None
    sql_path: Path

    def sql(self) -> str:
        """The script's text."""
        return self.sql_path.read_text(encoding="utf-8")


@functools.cache
def revision_chain() -> tuple[Revision, ...]:
    """Every shipped revision, root first; RevisionChainError unless they form one chain."""
    revisions = [_read(path) for path in sorted(_VERSIONS.glob("*.py"))]
    by_down = {r.down_revision: r for r in revisions}
    if len(by_down) != len(revisions):
        raise RevisionChainError(f"revisions in {_VERSIONS} branch: two share a down_revision")
    chain: list[Revision] = []
    nxt = by_down.get(None)
    while nxt is not None:
        chain.append(nxt)
        nxt = by_down.get(nxt.id)
    if len(chain) != len(revisions):
        raise RevisionChainError(f"revisions in {_VERSIONS} do not form one chain from a root")
    return tuple(chain)


def head_revision() -> str:
    """The id of the newest revision."""
    return revision_chain()[-1].id


def revisions_after(revision: str) -> tuple[Revision, ...]:
    """The revisions that follow ``revision``, in order; KeyError for an unknown id."""
    ids = [r.id for r in revision_chain()]
    if revision not in ids:
        raise KeyError(revision)
    return revision_chain()[ids.index(revision) + 1 :]


def _read(path: Path) -> Revision:
    values: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            try:
                values[target.id] = ast.literal_eval(value)
            except ValueError:
                continue
    revision, down, sql_name = values.get("revision"), values.get("down_revision"), values.get("UPGRADE_SQL")
    if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
        raise RevisionChainError(f"{path}: revision and down_revision must be string literals")
    if not isinstance(sql_name, str) or not (path.parent / "sql" / sql_name).is_file():
        raise RevisionChainError(
            f"{path}: needs UPGRADE_SQL = '<file in versions/sql/>' naming the script its upgrade() runs"
        )
    return Revision(revision, down, path.parent / "sql" / sql_name)
