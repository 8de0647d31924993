"""The README's Python snippets run as written, each against a fresh database.

A ``print(...)  # value`` line in a snippet states what it prints; the test
checks it. A snippet preceded by ``<!-- readme-test: skip (reason) -->`` is not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
_BLOCK = re.compile(r"(?P<marker><!-- readme-test: skip[^>]*-->\n)?```python\n(?P<code>.*?)```", re.DOTALL)
_EXPECTED = re.compile(r"^\s*print\(.*\)\s+#\s*(?P<value>.+)$")


def snippets() -> list[tuple[str, str]]:
    found = []
    text = README.read_text()
    for match in _BLOCK.finditer(text):
        if match["marker"]:
            continue
        line = text[: match.start()].count("\n") + 1
        found.append((f"README.md:{line}", match["code"]))
    return found


def test_the_readme_has_snippets_to_run() -> None:
    assert len(snippets()) >= 6


@pytest.mark.parametrize(("where", "code"), snippets(), ids=[w for w, _ in snippets()])
def test_readme_snippet_runs(where: str, code: str, db_url: str, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(code)
    env = {**os.environ, "DATABASE_URL": db_url}
    env.pop("JOBQUEUE_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, f"{where} failed:\n{result.stdout}\n{result.stderr}"
    expected = [m["value"].strip() for line in code.splitlines() if (m := _EXPECTED.match(line))]
    printed = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    assert printed == expected, f"{where} printed {printed}, the README says {expected}"
