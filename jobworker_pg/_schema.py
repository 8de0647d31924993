"""Installing and upgrading the ``worker`` schema without alembic.

A new database gets ``schema/worker.sql`` (shipped as ``jobworker_pg/worker.sql``) and is
stamped with the head revision in ``public.jobqueue_alembic_version``, the table alembic
(``jobqueue migrate``) keeps its history in, so both tools agree on where a database is.
An older database is upgraded through the revision chain (jobworker_pg._chain), the same
SQL scripts the alembic revisions run. A ``worker`` schema without a recorded revision
(0.1.0's install_schema, or worker.sql applied with psql) is matched against the catalog
of each revision first; when it matches none, nothing is changed and the error says what
to run.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import psycopg

from jobworker_pg._catalog import (
    SCHEMA,
    SchemaMismatchError,
    built_catalogs,
    catalog_differences,
    schema_catalog,
)
from jobworker_pg._chain import head_revision, revision_chain, revisions_after
from jobworker_pg._conninfo import resolve_conninfo
from jobworker_pg._errors import translate_errors

logger = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every process installing the schema,
# because concurrent CREATE OR REPLACE FUNCTION statements fail with "tuple concurrently updated".
_INSTALL_LOCK_KEY = 0x6A6F6271  # "jobq"

# In public, not in worker: alembic creates the version table before revision 1 creates the
# schema, and the downgrade to base drops the schema and then deletes from the version table.
# public is where alembic keeps a user's own alembic_version by default, so ours sits beside it.
VERSION_TABLE = "jobqueue_alembic_version"
VERSION_TABLE_SCHEMA = "public"
# The table exactly as alembic creates it, so either tool can take over from the other.
_CREATE_VERSION_TABLE = (
    f"create table if not exists {VERSION_TABLE_SCHEMA}.{VERSION_TABLE} ("
    f"version_num varchar(32) not null, constraint {VERSION_TABLE}_pkc primary key (version_num))"
)


def schema_sql() -> str:
    """The whole schema as SQL text (identical to ``schema/worker.sql`` in the repository)."""
    return resources.files(__package__).joinpath("worker.sql").read_text()


def install_schema(conninfo_or_conn: str | psycopg.Connection[Any] | None = None) -> None:
    """Create the ``worker`` schema, or upgrade it to this version's; idempotent and safe to
    run concurrently (an advisory lock orders installers and ``jobqueue migrate``).

    Takes a connection string (default: $JOBQUEUE_DATABASE_URL / $DATABASE_URL)
    or an open psycopg connection; on a connection it runs inside the current
    transaction (a savepoint), which the caller commits.

    Raises SchemaMismatchError, changing nothing, when the database is at a revision this
    version does not know (a newer pg-jobqueue set it up) or has an unversioned ``worker``
    schema that is no revision's.
    """
    if isinstance(conninfo_or_conn, psycopg.Connection):
        _install(conninfo_or_conn)
        return
    conninfo = resolve_conninfo(conninfo_or_conn)
    with translate_errors("install_schema"), psycopg.connect(conninfo) as conn:
        _install(conn)


def _install(conn: psycopg.Connection[Any]) -> None:
    with translate_errors("install_schema"), conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INSTALL_LOCK_KEY,))
        revision = recorded_revision(conn)
        if revision is None and not _schema_exists(conn):
            # Several statements in one string: sent with the simple query protocol.
            conn.execute(schema_sql().encode())
            stamp(conn, head_revision())
            logger.info("worker schema installed at %s", head_revision(), extra={"action": "install_schema"})
            return
        if revision is None:
            revision = identify_revision(conn)
            stamp(conn, revision)
        try:
            pending = revisions_after(revision)
        except KeyError:
            raise SchemaMismatchError(
                f"the worker schema is at revision {revision!r}, which this version of pg-jobqueue "
                f"does not know (its newest is {head_revision()!r}): a newer pg-jobqueue set it up; "
                "upgrade pg-jobqueue, or downgrade the schema with that newer version"
            ) from None
        for step in pending:
            conn.execute(step.sql().encode())
            stamp(conn, step.id)
            logger.info("worker schema upgraded to %s", step.id, extra={"action": "install_schema"})


def recorded_revision(conn: psycopg.Connection[Any]) -> str | None:
    """The revision in ``public.jobqueue_alembic_version``; None when there is none."""
    table = conn.execute("select to_regclass(%s)", (f"{VERSION_TABLE_SCHEMA}.{VERSION_TABLE}",)).fetchone()
    if table is None or table[0] is None:
        return None
    row = conn.execute(f"select version_num from {VERSION_TABLE_SCHEMA}.{VERSION_TABLE}").fetchone()
    return None if row is None else str(row[0])


def stamp(conn: psycopg.Connection[Any], revision: str) -> None:
    """Record ``revision`` as the database's, as ``alembic stamp`` would."""
    conn.execute(_CREATE_VERSION_TABLE)
    conn.execute(f"delete from {VERSION_TABLE_SCHEMA}.{VERSION_TABLE}")
    conn.execute(f"insert into {VERSION_TABLE_SCHEMA}.{VERSION_TABLE} (version_num) values (%s)", (revision,))


def identify_revision(conn: psycopg.Connection[Any]) -> str:
    """The revision whose schema the (unversioned) ``worker`` schema is: each revision's
    catalog is built in a scratch schema and compared. SchemaMismatchError when none is."""
    actual = schema_catalog(conn, SCHEMA)
    chain = revision_chain()
    catalogs = built_catalogs(conn, [r.sql() for r in chain])
    for revision, catalog in zip(chain, catalogs, strict=True):
        if catalog == actual:
            return revision.id
    differences = catalog_differences(actual, catalogs[-1], "the database", head_revision())
    shown = "\n  ".join(line[:300] for line in differences[:10])
    more = f"\n  ... and {len(differences) - 10} more" if len(differences) > 10 else ""
    raise SchemaMismatchError(
        "the worker schema has no recorded revision and is the schema of no revision of this "
        f"version of pg-jobqueue ({', '.join(r.id for r in chain)}), so it can be neither "
        f"stamped nor upgraded; nothing was changed. Against the newest:\n  {shown}{more}\n"
        "If it was changed by hand, undo that; if you "
        "know its revision, record it (alembic stamp <revision>, or insert it into "
        f"{VERSION_TABLE_SCHEMA}.{VERSION_TABLE}) and run install_schema or `jobqueue migrate` again"
    )


def _schema_exists(conn: psycopg.Connection[Any]) -> bool:
    return conn.execute("select 1 from pg_namespace where nspname = %s", (SCHEMA,)).fetchone() is not None
