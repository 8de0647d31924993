"""Alembic migrations of the ``worker`` schema: run them, adopt a database set up by
``install_schema``, or run them from your own alembic environment.

The migrations execute raw SQL (no models, no autogenerate). Revision ``jobqueue_0001``
is the whole schema; ``schema/worker.sql`` stays the source of truth and a test proves
that it and ``alembic upgrade head`` build identical catalogs. Their history is kept in
``public.jobqueue_alembic_version``, beside (never in) your own ``alembic_version``.

Programmatically (what ``jobqueue migrate`` does)::

    import jobworker_pg

    jobworker_pg.migrate("postgresql://app@db/app")      # to head; idempotent
    jobworker_pg.current_revision("postgresql://app@db/app")  # 'jobqueue_0001'
    jobworker_pg.downgrade("postgresql://app@db/app")    # drops schema worker (cascade)

From your own alembic ``env.py``, with its own history (recommended)::

    import jobworker_pg

    def run_migrations_online() -> None:
        connectable = engine_from_config(
            config.get_section(config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
        with connectable.connect() as connection:
            # pg-jobqueue's schema first: its own transaction, lock and version table.
            jobworker_pg.migrate(connection)
            context.configure(connection=connection, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()

Or as a branch of your own history: add the shipped revisions to ``version_locations``
in ``alembic.ini`` (they are then recorded in your ``alembic_version`` table, with the
branch label ``jobqueue``; upgrade with ``alembic upgrade heads``)::

    [alembic]
    script_location = %(here)s/alembic
    # not "os": on POSIX that splits at the colon of the package resource
    path_separator = ;
    version_locations = %(here)s/alembic/versions;jobworker_pg:migrations/versions

Pick one of the two per database: the histories do not know about each other. Either way
keep autogenerate away from the ``worker`` schema (the default, ``include_schemas=False``,
does). ``migrations_location()`` is the script directory, for a ``Config`` of your own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg.conninfo import conninfo_to_dict

from jobqueue import DatabaseError, InvalidJobError
from jobworker_pg._catalog import (
    SCHEMA,
    Catalog,
    SchemaMismatchError,
    catalog_differences,
    schema_catalog,
)
from jobworker_pg._conninfo import mask_password, resolve_conninfo
from jobworker_pg._errors import translate_errors
from jobworker_pg._extras import require
from jobworker_pg._schema import (
    _INSTALL_LOCK_KEY,
    VERSION_TABLE,
    VERSION_TABLE_SCHEMA,
    identify_revision,
)

__all__ = [  # also what tests and revision modules import from here
    "SCHEMA",
    "VERSION_TABLE",
    "VERSION_TABLE_SCHEMA",
    "Catalog",
    "SchemaMismatchError",
    "alembic_config",
    "catalog_differences",
    "current_revision",
    "downgrade",
    "migrate",
    "migrations_location",
    "run_environment",
    "run_sql_file",
    "schema_catalog",
    "sqlalchemy_url",
]

# SQLAlchemy and alembic are imported where they are used: together they cost about a
# second, which importing jobworker_pg (which re-exports migrate) should not.
if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.config import Config

logger = logging.getLogger(__name__)


def _require_alembic() -> None:
    """A MissingExtraError naming ``[migrations]`` when alembic (or SQLAlchemy) is missing."""
    require("alembic", "migrations", "jobqueue migrate (alembic)")
    require("sqlalchemy", "migrations", "jobqueue migrate (alembic)")


# Config.attributes keys understood by run_environment().
_CONNECTION = "connection"
_ADOPT = "jobqueue_adopt_installed_schema"
# alembic's ``context`` and ``op`` are process-wide module proxies: one alembic command at a
# time per process (other processes wait on the advisory lock instead). Re-entrant, for a
# migrate() called from inside another.
_ALEMBIC_LOCK = threading.RLock()


def migrations_location() -> str:
    """The alembic script directory shipped in the package (``jobworker_pg/migrations``)."""
    return os.fspath(Path(__file__).parent / "migrations")


def alembic_config(conninfo: str | None = None) -> Config:
    """An alembic ``Config`` for pg-jobqueue's migrations, built in code (no ini file).

    With ``conninfo`` (a libpq URL or key=value string) it also sets ``sqlalchemy.url``, so
    that any ``alembic.command`` (history, current, upgrade --sql ...) can run on it.
    """
    _require_alembic()
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", migrations_location())
    if conninfo is not None:
        url = sqlalchemy_url(conninfo).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolation
    return config


def migrate(conninfo: str | sa.Connection | None = None, revision: str = "head") -> None:
    """Upgrade the ``worker`` schema to ``revision`` through alembic; idempotent.

    ``conninfo`` is a libpq URL or key=value string (default: $JOBQUEUE_DATABASE_URL,
    then $DATABASE_URL) or an open SQLAlchemy ``Connection`` (for example inside your own
    alembic env.py). A database set up by ``install_schema`` (schema present, no history) is
    compared with the current schema and stamped as head instead of migrated.

    Runs in one transaction, under the advisory lock ``install_schema`` takes, so concurrent
    migrators (and installers) wait for each other. Thread-safe: alembic commands of one
    process run one at a time, as alembic's module-level ``context`` requires. On a
    ``Connection`` already in a transaction it joins that transaction; the caller commits.

    Raises SchemaMismatchError when an unversioned ``worker`` schema differs from the current
    one, DatabaseError when the database fails, InvalidJobError when no URL is found, and
    ``alembic.util.CommandError`` for an unknown revision.
    """
    _require_alembic()
    from alembic import command

    _run_command(conninfo, "migrate", revision, lambda config: command.upgrade(config, revision))


def downgrade(conninfo: str | sa.Connection | None = None, revision: str = "base") -> None:
    """Downgrade the ``worker`` schema to ``revision``; ``"base"`` drops the schema ``worker``
    with everything in it (cascade: also your objects that depend on it).

    Connection, transaction, locking and errors as in ``migrate``; a database set up by
    ``install_schema`` is stamped first, so it can be downgraded too.
    """
    _require_alembic()
    from alembic import command

    _run_command(conninfo, "downgrade", revision, lambda config: command.downgrade(config, revision))


def current_revision(conninfo: str | sa.Connection | None = None) -> str | None:
    """The revision recorded in ``public.jobqueue_alembic_version``; None when there is none
    (a new database, or one set up by ``install_schema`` and never migrated)."""
    _require_alembic()
    from alembic.runtime.migration import MigrationContext

    with _translated("current_revision"), _connected(conninfo) as connection:
        migration_context = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE, "version_table_schema": VERSION_TABLE_SCHEMA}
        )
        return migration_context.get_current_revision()


def sqlalchemy_url(conninfo: str) -> sa.URL:
    """The SQLAlchemy URL (``postgresql+psycopg``) of a libpq URL or key=value conninfo.

    Every libpq parameter is kept: user, password and database in the URL, a single TCP host
    and port too, and anything else (unix socket directories, several hosts, sslmode ...)
    as query parameters, which the psycopg dialect hands back to libpq unchanged.
    Raises InvalidJobError when libpq cannot parse ``conninfo``.
    """
    _require_alembic()
    import sqlalchemy as sa

    try:
        params = {key: str(value) for key, value in conninfo_to_dict(conninfo).items()}
    except psycopg.ProgrammingError as exc:
        raise InvalidJobError(f"invalid database URL {mask_password(conninfo)!r}") from exc
    user = params.pop("user", "") or None
    password = params.pop("password", "") or None
    dbname = params.pop("dbname", "") or None
    host = params.pop("host", "")
    port = params.pop("port", "")
    if host and not any(c in host for c in ",/@") and (not port or port.isdigit()):
        return sa.URL.create(
            "postgresql+psycopg", user, password, host, int(port) if port else None, dbname, params
        )
    params.update({key: value for key, value in (("host", host), ("port", port)) if value})
    return sa.URL.create("postgresql+psycopg", user, password, None, None, dbname, params)


def run_sql_file(path: str | os.PathLike[str]) -> None:
    """Execute a SQL script of several statements in the running migration's transaction.

    For revision modules. Online it goes straight to psycopg with the simple query protocol
    (no parameter parsing: ``%`` and ``:name`` are plain text); with ``--sql`` it is emitted.
    """
    from alembic import context, op

    sql_text = Path(path).read_text(encoding="utf-8")
    if context.is_offline_mode():
        op.execute(sql_text)
        return
    _driver_connection(op.get_bind()).execute(sql_text.encode())


def run_environment() -> None:
    """The body of the migrations' ``env.py``.

    Uses ``config.attributes["connection"]`` when given (as ``migrate`` does), else
    ``sqlalchemy.url``, else $JOBQUEUE_DATABASE_URL / $DATABASE_URL. Takes the install lock,
    adopts an ``install_schema`` database when ``migrate``/``downgrade`` asked for it, then
    runs the migrations in one transaction.
    """
    import sqlalchemy as sa
    from alembic import context

    config = context.config
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            dialect_name="postgresql",
            literal_binds=True,
            version_table=VERSION_TABLE,
            version_table_schema=VERSION_TABLE_SCHEMA,
            transactional_ddl=True,
        )
        with context.begin_transaction():
            context.execute(f"select pg_advisory_xact_lock({_INSTALL_LOCK_KEY})")
            context.run_migrations()
        return
    connection = config.attributes.get(_CONNECTION)
    if isinstance(connection, sa.Connection):
        _run_online(connection, adopt=bool(config.attributes.get(_ADOPT)))
        return
    url = config.get_main_option("sqlalchemy.url") or sqlalchemy_url(resolve_conninfo(None))
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            _run_online(connection, adopt=bool(config.attributes.get(_ADOPT)))
    finally:
        engine.dispose()


def _run_online(connection: sa.Connection, *, adopt: bool) -> None:
    import sqlalchemy as sa
    from alembic import context

    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        version_table_schema=VERSION_TABLE_SCHEMA,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        connection.execute(sa.text("select pg_advisory_xact_lock(:key)"), {"key": _INSTALL_LOCK_KEY})
        migration_context = context.get_context()
        if adopt and not migration_context.get_current_heads() and _schema_exists(connection, SCHEMA):
            revision = identify_revision(_driver_connection(connection))
            migration_context.stamp(context.script, revision)
            logger.info(
                "the worker schema (installed without migration history) is at %s: stamped",
                revision,
                extra={"action": "migrate_stamp"},
            )
        context.run_migrations()


def _run_command(
    conninfo: str | sa.Connection | None, action: str, revision: str, run: Callable[[Config], None]
) -> None:
    import sqlalchemy as sa

    config = alembic_config()
    config.attributes[_ADOPT] = True
    where = "the given connection" if isinstance(conninfo, sa.Connection) else None
    with _translated(action), _connected(conninfo) as connection:
        if where is None:
            where = mask_password(connection.engine.url.render_as_string(hide_password=True))
        logger.info("%s %s to %s", action, where, revision, extra={"action": action})
        config.attributes[_CONNECTION] = connection
        with _ALEMBIC_LOCK, _keeping_outer_alembic_proxies():
            run(config)


@contextlib.contextmanager
def _connected(conninfo: str | sa.Connection | None) -> Iterator[sa.Connection]:
    """The given connection, or a new one (closed afterwards) to ``conninfo``."""
    import sqlalchemy as sa

    if isinstance(conninfo, sa.Connection):
        yield conninfo
        return
    engine = sa.create_engine(sqlalchemy_url(resolve_conninfo(conninfo)), poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    """Driver errors, raw or wrapped by SQLAlchemy, as DatabaseError (original as __cause__)."""
    import sqlalchemy as sa

    try:
        with translate_errors(action):
            yield
    except sa.exc.DBAPIError as exc:
        orig = exc.orig if exc.orig is not None else exc
        raise DatabaseError(f"{action}: {type(orig).__name__}: {orig}".rstrip()) from exc


@contextlib.contextmanager
def _keeping_outer_alembic_proxies() -> Iterator[None]:
    """``alembic.context`` and ``alembic.op`` are module proxies that a nested alembic command
    removes on exit; put back those of the alembic run we were called from, if any (your
    env.py or revision), so that it can carry on."""
    from alembic import context as context_module
    from alembic import op as op_module

    outer = [getattr(module, "_proxy", None) for module in (context_module, op_module)]
    try:
        yield
    finally:
        for proxy in outer:
            if proxy is not None:
                proxy._install_proxy()


def _driver_connection(connection: sa.Connection) -> psycopg.Connection[Any]:
    return cast("psycopg.Connection[Any]", connection.connection.driver_connection)


def _schema_exists(connection: sa.Connection, schema: str) -> bool:
    import sqlalchemy as sa

    found = connection.execute(sa.text("select 1 from pg_namespace where nspname = :s"), {"s": schema})
    return found.first() is not None
