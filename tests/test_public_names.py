"""Every public name that README.md and docs/ use exists (a documented API that raises
AttributeError is a bug the snippets alone do not catch: prose is not run)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = ("jobqueue", "jobworker", "jobworker_pg")
# `jobworker_pg.migrate`, `jobqueue.add(...)`, `jobworker_pg.dashboard.create_app`
_DOTTED = re.compile(r"(?<![\w.])((?:jobqueue|jobworker|jobworker_pg)(?:\.[A-Za-z_]\w*)+)")
# from jobworker_pg import init_job_queue, install_schema
_FROM = re.compile(r"from\s+((?:jobqueue|jobworker|jobworker_pg)(?:\.\w+)*)\s+import\s+(\([^)]*\)|[\w \t,]+)")


def _names_used() -> set[str]:
    names: set[str] = set()
    for doc in DOCUMENTS:
        text = doc.read_text()
        names.update(m.group(1) for m in _DOTTED.finditer(text))
        for module, imported in _FROM.findall(text):
            listed = imported.strip("()").split(",")
            names.update(f"{module}.{n.split()[0]}" for n in listed if n.strip())
    return names


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    obj: object = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:  # a submodule not imported by its package
            obj = importlib.import_module(".".join(parts[: i + 1]))
        except ImportError:
            return False
    return True


def test_the_documents_name_public_api() -> None:
    assert len(_names_used()) > 20  # the scan finds the API the documents use


@pytest.mark.parametrize("dotted", sorted(_names_used()))
def test_a_documented_name_exists(dotted: str) -> None:
    assert _resolves(dotted), f"{dotted} is documented but does not exist"
