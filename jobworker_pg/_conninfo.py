"""Finding the database URL, and showing it without its password."""

from __future__ import annotations

import os
import re

from jobqueue import InvalidJobError

ENV_VARS = ("JOBQUEUE_DATABASE_URL", "DATABASE_URL")

_URL_PASSWORD = re.compile(r"(?P<head>://[^:/@?#]*:)(?P<password>[^@/?#]*)(?P<tail>@)")
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|\S+)")


def mask_password(conninfo: str) -> str:
    """``conninfo`` with any password replaced by ``***`` (URL or key=value form)."""
    masked = _URL_PASSWORD.sub(lambda m: f"{m['head']}***{m['tail']}" if m["password"] else m[0], conninfo)
    return _KV_PASSWORD.sub(lambda m: f"{m['head']}***", masked)


def resolve_conninfo(conninfo: str | None) -> str:
    """``conninfo`` itself, else $JOBQUEUE_DATABASE_URL, else $DATABASE_URL.

    Raises InvalidJobError when none is given, saying where it is looked for.
    """
    if conninfo:
        return conninfo
    for name in ENV_VARS:
        value = os.environ.get(name)
        if value:
            return value
    raise InvalidJobError(
        "no database URL: pass conninfo (e.g. 'postgresql://user@host/db') or set " + " or ".join(ENV_VARS)
    )
