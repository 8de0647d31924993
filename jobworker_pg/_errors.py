"""psycopg errors translated to the jobqueue error tree, in one place."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import psycopg_pool

from jobqueue import DatabaseError, ServiceClosedError


@contextlib.contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Re-raise driver errors as DatabaseError (or ServiceClosedError for a closed pool),
    keeping the original as ``__cause__``. ``action`` says what was being done."""
    try:
        yield
    except psycopg_pool.PoolClosed as exc:
        raise ServiceClosedError(f"{action}: the service is closed") from exc
    except psycopg_pool.PoolTimeout as exc:
        raise DatabaseError(f"{action}: no database connection available: {exc}") from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"{action}: {type(exc).__name__}: {exc}".rstrip()) from exc
