"""Handlers for the ``jobqueue worker`` tests (imported by the worker subprocess).

- ``cli.slow``: creates the file ``payload["marker"]`` when it starts (so a test
  can wait for it), sleeps ``payload["sleep"]`` seconds, returns ``{"slept": ...}``.
- ``cli.ok``: returns its payload.
- ``cli.fail``: raises ValueError.

``registry`` is a separate jobworker.Registry with the type ``cli.reg``, for
``jobqueue worker cli_app:registry``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jobworker
from jobqueue import Job


@jobworker.job("cli.slow")
def slow(job: Job) -> dict[str, Any]:
    Path(job.payload["marker"]).touch()
    time.sleep(float(job.payload.get("sleep", 2.0)))
    return {"slept": job.payload.get("sleep", 2.0)}


@jobworker.job("cli.ok")
def ok(job: Job) -> Any:
    return job.payload


@jobworker.job("cli.fail")
def fail(job: Job) -> None:
    raise ValueError("boom")


registry = jobworker.Registry()


@registry.job("cli.reg")
def from_registry(job: Job) -> str:
    return "from the registry"
