"""The public surface of jobworker: exports, layering, the runnable docstring."""

from __future__ import annotations

import doctest
import subprocess
import sys

import jobworker


def test_all_is_sorted_and_complete() -> None:
    assert jobworker.__all__ == sorted(jobworker.__all__, key=lambda name: (not name.isupper(), name))
    public = {name for name in vars(jobworker) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(jobworker, name)).__name__ == "module"}
    assert set(jobworker.__all__) == public - modules


def test_every_public_name_has_a_docstring() -> None:
    for name in jobworker.__all__:
        value = getattr(jobworker, name)
        if (callable(value) and not name[0].isupper()) or isinstance(value, type):
            assert value.__doc__, name


def test_package_docstring_example_runs() -> None:
    result = doctest.testmod(jobworker, raise_on_error=False)
    assert result.attempted > 0
    assert result.failed == 0


def test_jobworker_imports_no_database_driver() -> None:
    code = (
        "import sys, jobworker; "
        "bad = [m for m in ('psycopg', 'psycopg_pool', 'sqlalchemy', 'jobworker_pg') if m in sys.modules]; "
        "print(bad)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "[]"
