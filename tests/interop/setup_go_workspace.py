"""Write a go.work that builds go-jobqueue and our interop program offline.

No Go module proxy is reachable where these tests run, so every module of
go-jobqueue's build graph comes from a local source tree. GO_DEPS_DIR holds
those trees (any layout: each directory with a go.mod is one module, named by
its ``module`` line); this script writes a go.work that ``use``s go-jobqueue
and tests/interop/goprog and ``replace``s every module found under GO_DEPS_DIR
with its local directory. Build with GOPROXY=off GOFLAGS=-mod=mod.

Usage: python tests/interop/setup_go_workspace.py OUT_DIR
       (reads GO_JOBQUEUE_SRC, GO_DEPS_DIR and GO; prints the go.work path)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

GO_PROGRAM_DIR = Path(__file__).resolve().parent / "goprog"
_MODULE_LINE = re.compile(r'^module\s+"?([^"\s]+)"?\s*$', re.MULTILINE)
# Nested modules that are examples, tools or fixtures: never part of a build graph.
_MISSING_MODULE = re.compile(r"(\S+)@\S+: module lookup disabled by GOPROXY=off")
_MAX_STUBS = 50
# What the interop suite builds: go-jobqueue with its tests, and our program.
_BUILT_PACKAGES = ("github.com/domonda/go-jobqueue/...", "github.com/pg-jobqueue/interop/...")
_SKIPPED_DIRS = {"testdata", "examples", "_codegen", "tools", "benchmarks", ".git"}


def module_dirs(deps_dir: Path, shim_dir: Path) -> dict[str, Path]:
    """Map each module path found under deps_dir to its directory (first one wins).

    Code from before Go modules (go-spew, go-difflib) has no go.mod: such a
    tree must sit at deps_dir/host/owner/name and is named by that path and copied into shim_dir with a
    generated go.mod, since a replace target must be a module.
    """
    found: dict[str, Path] = {}
    for root, dirs, files in os.walk(deps_dir):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        here = Path(root)
        if "go.mod" in files:
            match = _MODULE_LINE.search((here / "go.mod").read_text())
            # A real module path starts with a domain; "benchmarks" and the like are local.
            if match and "." in match.group(1).split("/")[0]:
                found.setdefault(match.group(1), here)
        elif any(name.endswith(".go") for name in files):
            # The module is the repository: host/owner/name under deps_dir.
            path = "/".join(here.relative_to(deps_dir).parts[:3])
            if not any(f"{path}/".startswith(f"{known}/") for known in found):
                found[path] = _shim(deps_dir / path, shim_dir / path, path)
    return found


def _shim(source: Path, target: Path, module_path: str) -> Path:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    (target / "go.mod").write_text(f"module {module_path}\n\ngo 1.13\n")
    return target


def go_env(go_work: Path) -> dict[str, str]:
    """The environment for an offline build against go_work."""
    cache = go_work.parent
    return {
        **os.environ,
        "GOWORK": str(go_work),
        "GOPROXY": "off",
        "GOSUMDB": "off",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "",
        "GOCACHE": os.environ.get("GOCACHE", str(cache / "gocache")),
        "GOPATH": os.environ.get("GOPATH", str(cache / "gopath")),
    }


def write_go_work(out_dir: Path, go_jobqueue_src: Path, deps_dir: Path, go: str) -> Path:
    """Write out_dir/go.work and return its path.

    Newer go.mod files of test-only dependencies (gopkg.in/check.v1 ->
    kr/pretty -> go-internal -> x/mod ...) name modules that no package of
    the build imports; Go still wants their go.mod to compute the graph. Each
    such module Go asks for and GO_DEPS_DIR lacks gets an empty stub module,
    so the graph closes; a stubbed module whose packages were really needed
    fails the build with "no required module provides package".
    """
    if not (go_jobqueue_src / "go.mod").is_file():
        raise SystemExit(f"GO_JOBQUEUE_SRC={go_jobqueue_src} has no go.mod")
    modules = module_dirs(deps_dir, out_dir / "shims")
    if "github.com/domonda/go-sqldb" not in modules:
        raise SystemExit(f"GO_DEPS_DIR={deps_dir} has no github.com/domonda/go-sqldb")
    go_work = out_dir / "go.work"
    for _ in range(_MAX_STUBS):
        _write(go_work, go_jobqueue_src, modules)
        listed = subprocess.run(
            [go, "list", "-deps", "-test", *_BUILT_PACKAGES],
            cwd=go_jobqueue_src,
            env=go_env(go_work),
            capture_output=True,
            text=True,
            check=False,
        )
        if listed.returncode == 0:
            return go_work
        missing = _MISSING_MODULE.findall(listed.stderr)
        if not missing:
            raise SystemExit(f"go list failed:\n{listed.stderr}")
        for path in missing:
            modules[path] = _stub(out_dir / "stubs" / path, path)
    raise SystemExit(f"more than {_MAX_STUBS} modules missing from GO_DEPS_DIR")


def _stub(target: Path, module_path: str) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    (target / "go.mod").write_text(f"module {module_path}\n\ngo 1.13\n")
    return target


def _write(go_work: Path, go_jobqueue_src: Path, modules: dict[str, Path]) -> None:
    lines = ["go 1.26.0", "", "use (", f"\t{go_jobqueue_src}", f"\t{GO_PROGRAM_DIR}", ")", ""]
    lines += ["replace ("]
    lines += [f"\t{path} => {directory}" for path, directory in sorted(modules.items())]
    lines += [")", ""]
    go_work.parent.mkdir(parents=True, exist_ok=True)
    go_work.write_text("\n".join(lines))


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    src, deps = os.environ.get("GO_JOBQUEUE_SRC"), os.environ.get("GO_DEPS_DIR")
    go = os.environ.get("GO", "go")
    if not src or not deps:
        raise SystemExit("set GO_JOBQUEUE_SRC and GO_DEPS_DIR (see docs/interop.md)")
    out_dir = Path(sys.argv[1]).resolve()
    sys.stdout.write(f"{write_go_work(out_dir, Path(src).resolve(), Path(deps).resolve(), go)}\n")


if __name__ == "__main__":
    main()
