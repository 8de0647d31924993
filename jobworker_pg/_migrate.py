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
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg.conninfo import conninfo_to_dict

from jobqueue import DatabaseError, InvalidJobError
from jobworker_pg._conninfo import mask_password, resolve_conninfo
from jobworker_pg._errors import translate_errors
from jobworker_pg._extras import require
from jobworker_pg._schema import _INSTALL_LOCK_KEY, schema_sql

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


SCHEMA = "worker"
# In public, not in worker: alembic creates the version table before revision 1 creates the
# schema, and the downgrade to base drops the schema and then deletes from the version table.
# public is where alembic keeps a user's own alembic_version by default, so ours sits beside it.
VERSION_TABLE = "jobqueue_alembic_version"
VERSION_TABLE_SCHEMA = "public"

# Config.attributes keys understood by run_environment().
_CONNECTION = "connection"
_ADOPT = "jobqueue_adopt_installed_schema"
# Where the current schema is built (and rolled back) to compare an unversioned install with.
_SCRATCH_SCHEMA = "jobqueue_migrate_check"
# What moves worker.sql into the scratch schema: the schema it creates and the names it
# qualifies (in code and in literals like 'worker.job'::regclass); other text keeps "worker".
_CREATE_SCHEMA = re.compile(r"(\bschema\s+(?:if\s+not\s+exists\s+)?)worker\b", re.IGNORECASE)
_QUALIFIED = re.compile(r"\bworker(?=\.)")

# alembic's ``context`` and ``op`` are process-wide module proxies: one alembic command at a
# time per process (other processes wait on the advisory lock instead). Re-entrant, for a
# migrate() called from inside another.
_ALEMBIC_LOCK = threading.RLock()

# A catalog: section name -> sorted rows, each row one line of text.
Catalog = dict[str, list[str]]


class SchemaMismatchError(DatabaseError):
    """The database has a ``worker`` schema with no migration history that is not the schema
    of this version of pg-jobqueue, so it cannot be stamped; nothing was changed."""


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
            _check_is_current_schema(_driver_connection(connection))
            migration_context.stamp(context.script, "heads")
            logger.info(
                "the worker schema (installed without migrations) is current: stamped %s",
                context.script.get_current_head(),
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


def _check_is_current_schema(conn: psycopg.Connection[Any]) -> None:
    """Raise SchemaMismatchError unless the ``worker`` schema is what worker.sql builds."""
    differences = catalog_differences(
        schema_catalog(conn, SCHEMA), _current_schema_catalog(conn), "the database", "this version"
    )
    if differences:
        shown = "\n  ".join(line[:300] for line in differences[:10])
        more = f"\n  ... and {len(differences) - 10} more" if len(differences) > 10 else ""
        raise SchemaMismatchError(
            "the worker schema has no migration history and differs from the schema of this "
            f"version of pg-jobqueue, so it cannot be stamped:\n  {shown}{more}\n"
            "Bring it up to date with install_schema() if that is enough, or stamp the matching "
            f"revision yourself (alembic stamp, version table {VERSION_TABLE_SCHEMA}.{VERSION_TABLE})."
        )


def _current_schema_catalog(conn: psycopg.Connection[Any]) -> Catalog:
    """The catalog worker.sql builds on this server: built in a scratch schema, rolled back."""
    sql_text = _CREATE_SCHEMA.sub(rf"\1{_SCRATCH_SCHEMA}", schema_sql())
    sql_text = _QUALIFIED.sub(_SCRATCH_SCHEMA, sql_text)
    conn.execute(f"savepoint {_SCRATCH_SCHEMA}")
    try:
        conn.execute(sql_text.encode())
        catalog = schema_catalog(conn, _SCRATCH_SCHEMA)
    finally:
        conn.execute(f"rollback to savepoint {_SCRATCH_SCHEMA}")
        conn.execute(f"release savepoint {_SCRATCH_SCHEMA}")
    return {
        section: [row.replace(_SCRATCH_SCHEMA, SCHEMA) for row in rows] for section, rows in catalog.items()
    }


# One query per section; each selects one text column, in the schema given as %(schema)s.
# Owners and privileges are left out: they depend on who ran the SQL, not on the SQL.
_CATALOG_QUERIES: dict[str, str] = {
    "relations": """
        select concat_ws(' | ', c.relname, c.relkind, c.relpersistence, c.relrowsecurity, c.reloptions::text)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %(schema)s and c.relkind not in ('i', 'I')""",
    "columns": """
        select concat_ws(' | ', c.relname,
                         row_number() over (partition by c.oid order by a.attnum), a.attname,
                         format_type(a.atttypid, a.atttypmod),
                         case when a.attnotnull then 'not null' else 'null' end,
                         pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
                         case when a.attcollation <> 0 then a.attcollation::regcollation::text end)
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        join pg_namespace n on n.oid = c.relnamespace
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where n.nspname = %(schema)s and c.relkind not in ('i', 'I', 'S') and a.attnum > 0
          and not a.attisdropped""",
    "indexes": """
        select concat_ws(' | ', pg_get_indexdef(i.indexrelid), i.indisvalid)
        from pg_index i join pg_class c on c.oid = i.indexrelid
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %(schema)s""",
    "constraints": """
        select concat_ws(' | ', coalesce(c.relname, t.typname), con.conname, con.contype,
                         pg_get_constraintdef(con.oid), con.convalidated)
        from pg_constraint con join pg_namespace n on n.oid = con.connamespace
        left join pg_class c on c.oid = con.conrelid
        left join pg_type t on t.oid = con.contypid
        where n.nspname = %(schema)s""",
    "functions": """
        select case when p.prokind = 'a' then 'aggregate ' || p.oid::regprocedure::text
                    else pg_get_functiondef(p.oid) end
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = %(schema)s""",
    "triggers": """
        select concat_ws(' | ', pg_get_triggerdef(t.oid), t.tgenabled)
        from pg_trigger t join pg_class c on c.oid = t.tgrelid
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %(schema)s and not t.tgisinternal""",
    "views": """
        select concat_ws(' | ', c.relname, pg_get_viewdef(c.oid))
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %(schema)s and c.relkind in ('v', 'm')""",
    "sequences": """
        select concat_ws(' | ', c.relname, format_type(s.seqtypid, null), s.seqstart, s.seqincrement,
                         s.seqmin, s.seqmax, s.seqcache, s.seqcycle)
        from pg_sequence s join pg_class c on c.oid = s.seqrelid
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %(schema)s""",
    "types": """
        select concat_ws(' | ', t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod),
                         t.typnotnull, t.typdefault,
                         (select string_agg(e.enumlabel, ',' order by e.enumsortorder)
                          from pg_enum e where e.enumtypid = t.oid))
        from pg_type t join pg_namespace n on n.oid = t.typnamespace
        where n.nspname = %(schema)s and t.typtype in ('e', 'd', 'r', 'm')""",
    "policies": """
        select concat_ws(' | ', tablename, policyname, permissive, roles::text, cmd, qual, with_check)
        from pg_policies where schemaname = %(schema)s""",
    "rules": """
        select concat_ws(' | ', tablename, rulename, definition)
        from pg_rules where schemaname = %(schema)s""",
    "comments": """
        select pg_describe_object(d.classoid, d.objoid, d.objsubid) || ': ' || d.description
        from pg_description d
        where d.objoid >= 16384
          and pg_describe_object(d.classoid, d.objoid, d.objsubid)
              ~ ('^schema ' || %(schema)s || '$|\\m' || %(schema)s || '\\.')""",
}


def schema_catalog(conn: psycopg.Connection[Any], schema: str = SCHEMA) -> Catalog:
    """Everything that defines ``schema``, as sorted lines of text per section: relations,
    columns (in order, with type, nullability and default), indexes, constraints, functions
    (pg_get_functiondef), triggers (pg_get_triggerdef), views, sequences, types, policies,
    rules and comments. Two databases have the same schema when their catalogs are equal."""
    exists = conn.execute("select 1 from pg_namespace where nspname = %s", (schema,)).fetchone()
    catalog: Catalog = {"schema": [schema] if exists else []}
    for section, query in _CATALOG_QUERIES.items():
        rows = conn.execute(query, {"schema": schema}).fetchall()
        catalog[section] = sorted(str(row[0]) for row in rows)
    return catalog


def catalog_differences(a: Catalog, b: Catalog, a_name: str = "a", b_name: str = "b") -> list[str]:
    """One line per row that is in only one of two catalogs; empty when they are equal."""
    lines: list[str] = []
    for section in sorted(a.keys() | b.keys()):
        rows_a, rows_b = set(a.get(section, [])), set(b.get(section, []))
        lines += [f"{section}: only in {a_name}: {row}" for row in sorted(rows_a - rows_b)]
        lines += [f"{section}: only in {b_name}: {row}" for row in sorted(rows_b - rows_a)]
    return lines
