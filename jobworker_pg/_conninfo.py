"""Finding the database URL, and showing it without its password."""

from __future__ import annotations

import os
import re

from jobqueue import InvalidJobError

ENV_VARS = ("JOBQUEUE_DATABASE_URL", "DATABASE_URL")

_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|\S+)")
# What the user-info part of a URL may hold unencoded (RFC 3986 unreserved and sub-delims, ":").
_USERINFO_OK = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:%]*$")


def _split_userinfo(conninfo: str) -> tuple[str, str, str] | None:
    """(``scheme://``, user info, ``@host...``) of a URL with user info, split at the *last*
    ``@``: a password holding an unencoded ``/`` or ``@`` stays inside what is masked."""
    scheme, sep, rest = conninfo.partition("://")
    if not sep or "@" not in rest or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return None
    userinfo, _, host = rest.rpartition("@")
    return scheme + sep, userinfo, "@" + host


def mask_password(conninfo: str) -> str:
    """``conninfo`` with any password replaced by ``***`` (URL or key=value form). In a URL
    everything between ``user:`` and the last ``@`` is masked, whatever it holds."""
    parts = _split_userinfo(conninfo)
    if parts is not None:
        head, userinfo, tail = parts
        user, colon, password = userinfo.partition(":")
        if colon and password:
            conninfo = f"{head}{user}:***{tail}"
        elif not _USERINFO_OK.match(userinfo):  # malformed: no telling where a password is
            conninfo = f"{head}***{tail}"
    return _KV_PASSWORD.sub(lambda m: f"{m['head']}***", conninfo)


def malformed_url_hint(conninfo: str) -> str | None:
    """What is wrong with a URL whose user or password holds an unencoded ``/``, ``@`` (or
    another reserved character), else None."""
    parts = _split_userinfo(conninfo)
    if parts is None or _USERINFO_OK.match(parts[1]):
        return None
    return (
        "the URL is malformed: its user or password holds a character that must be "
        "percent-encoded (/ as %2F, @ as %40, ? as %3F, # as %23)"
    )


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
