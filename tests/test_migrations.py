"""Migrations: alembic upgrade head builds exactly the schema of schema/worker.sql.

Every test builds its own databases on the test server; catalogs (tables, columns with types,
nullability and defaults, indexes, constraints, function definitions, trigger definitions ...)
are compared with ``schema_catalog``, and the negative tests prove that the comparison notices
a change of each kind.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from helpers import PgServer
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.dialects.postgresql import psycopg as sa_psycopg

from jobworker_pg import install_schema
from jobworker_pg._chain import head_revision, revision_chain
from jobworker_pg._migrate import (
    VERSION_TABLE,
    Catalog,
    SchemaMismatchError,
    alembic_config,
    catalog_differences,
    current_revision,
    downgrade,
    migrate,
    migrations_location,
    schema_catalog,
    sqlalchemy_url,
)
from jobworker_pg._schema import _INSTALL_LOCK_KEY

HEAD = head_revision()

MakeDb = Callable[[], str]


@pytest.fixture
def make_db(pg_server: PgServer) -> Iterator[MakeDb]:
    """Makes empty databases for this test; drops them afterwards."""
    names: list[str] = []

    def make() -> str:
        name = f"jobqueue_mig_{uuid.uuid4().hex[:12]}"
        names.append(name)
        return pg_server.create_database(name)

    yield make
    for name in names:
        pg_server.drop_database(name)


@pytest.fixture
def installed_catalog(make_db: MakeDb) -> Catalog:
    """The catalog that schema/worker.sql (install_schema) builds on this server."""
    url = make_db()
    install_schema(url)
    return catalog(url)


def catalog(url: str, schema: str = "worker") -> Catalog:
    with psycopg.connect(url) as conn:
        return schema_catalog(conn, schema)


def execute(url: str, statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statements.encode())


def assert_same(actual: Catalog, expected: Catalog) -> None:
    differences = catalog_differences(actual, expected, "migrated", "worker.sql")
    assert not differences, "\n".join(differences)


def exists(url: str, regclass: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("select to_regclass(%s) is not null", (regclass,)).fetchone()
    return bool(row and row[0])


# --- the source of truth and the migrations agree ------------------------------------------


def test_upgrade_head_builds_the_catalog_of_worker_sql(make_db: MakeDb, installed_catalog: Catalog) -> None:
    url = make_db()
    migrate(url)
    migrated = catalog(url)
    assert migrated["functions"] and migrated["triggers"] and migrated["indexes"]  # not comparing nothing
    assert_same(migrated, installed_catalog)
    assert current_revision(url) == HEAD


def test_install_and_migrate_leave_the_same_version_table_in_public(make_db: MakeDb) -> None:
    installed, migrated = make_db(), make_db()
    install_schema(installed)
    migrate(migrated)
    public_migrated = catalog(migrated, "public")
    assert any(row.startswith(f"{VERSION_TABLE} |") for row in public_migrated["relations"])
    # install_schema records the head revision in alembic's own table, created as alembic does.
    assert_same(public_migrated, catalog(installed, "public"))
    assert current_revision(installed) == HEAD


@pytest.mark.parametrize(
    "change",
    [
        "alter table worker.job alter column priority set default 1",
        "alter table worker.job alter column origin type varchar(200)",
        "alter table worker.job alter column origin drop not null",
        "alter table worker.job add column extra text",
        "create table worker.extra (id int)",
        "drop index worker.job_stopped_at_idx; create index job_stopped_at_idx on worker.job (stopped_at)",
        "alter table worker.job drop constraint job_attempt_check;"
        " alter table worker.job add constraint job_attempt_check check (attempt >= 1)",
        "create or replace function worker.on_unstopped_job_deleted() returns trigger"
        " language plpgsql as $$ begin return null; end $$",
        "drop trigger job_inserted on worker.job",
        "alter table worker.job disable trigger job_changed_state",
        "comment on table worker.job is 'jobs'",
    ],
)
def test_catalog_comparison_notices_a_changed_schema(
    make_db: MakeDb, installed_catalog: Catalog, change: str
) -> None:
    url = make_db()
    migrate(url)
    execute(url, change)
    assert catalog_differences(catalog(url), installed_catalog)


# --- upgrade, downgrade, idempotence, concurrency ------------------------------------------


def test_migrate_twice_changes_nothing(make_db: MakeDb, installed_catalog: Catalog) -> None:
    url = make_db()
    migrate(url)
    migrate(url)
    assert current_revision(url) == HEAD
    assert_same(catalog(url), installed_catalog)


def test_downgrade_drops_the_schema_and_upgrade_rebuilds_it(
    make_db: MakeDb, installed_catalog: Catalog
) -> None:
    url = make_db()
    migrate(url)
    downgrade(url)
    assert catalog(url) == catalog(make_db())  # nothing of ours left in worker ...
    assert current_revision(url) is None  # ... and no revision recorded
    assert exists(url, f"public.{VERSION_TABLE}")
    migrate(url)
    assert_same(catalog(url), installed_catalog)
    assert current_revision(url) == HEAD


def test_concurrent_migrating_processes_wait_for_each_other(
    make_db: MakeDb, installed_catalog: Catalog
) -> None:
    url = make_db()
    code = "import sys; from jobworker_pg._migrate import migrate; migrate(sys.argv[1])"
    with psycopg.connect(url, autocommit=True) as holder:
        # Hold the migration lock until every process is queued on it, then let them race.
        holder.execute("select pg_advisory_lock(%s)", (_INSTALL_LOCK_KEY,))
        procs = [
            subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True)
            for _ in range(3)
        ]
        try:
            deadline = time.monotonic() + 60
            while waiting_for_advisory_lock(holder) < len(procs):
                assert time.monotonic() < deadline, "the migrators never queued on the advisory lock"
                assert all(proc.poll() is None for proc in procs), [p.communicate()[1] for p in procs]
                time.sleep(0.05)
        finally:
            holder.execute("select pg_advisory_unlock(%s)", (_INSTALL_LOCK_KEY,))
        outcomes = [(proc.wait(timeout=60), proc.communicate()[1]) for proc in procs]
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    assert current_revision(url) == HEAD
    assert_same(catalog(url), installed_catalog)


def waiting_for_advisory_lock(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "select count(*) from pg_locks l join pg_database d on d.oid = l.database"
        " where l.locktype = 'advisory' and not l.granted and d.datname = current_database()"
    ).fetchone()
    return int(row[0]) if row else 0


def test_concurrent_migrations_in_threads_all_succeed(make_db: MakeDb, installed_catalog: Catalog) -> None:
    url = make_db()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run() -> None:
        try:
            start.wait(timeout=10)
            migrate(url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, name=f"migrate-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert current_revision(url) == HEAD
    assert_same(catalog(url), installed_catalog)


def test_migrate_and_install_schema_run_together(make_db: MakeDb, installed_catalog: Catalog) -> None:
    url = make_db()
    errors: list[BaseException] = []

    def run(fn: Callable[[str], None]) -> None:
        try:
            fn(url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in (migrate, install_schema, migrate)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert_same(catalog(url), installed_catalog)


# --- a database set up by install_schema ----------------------------------------------------


def forget_revision(url: str) -> None:
    """Make the database look like worker.sql applied with psql: no recorded revision."""
    execute(url, f"drop table public.{VERSION_TABLE}")


def test_install_schema_records_the_head_revision(db_url: str) -> None:
    assert current_revision(db_url) == HEAD


def test_migrate_stamps_a_database_with_no_recorded_revision(db_url: str, installed_catalog: Catalog) -> None:
    forget_revision(db_url)
    assert current_revision(db_url) is None
    migrate(db_url)
    assert current_revision(db_url) == HEAD
    migrate(db_url)
    assert current_revision(db_url) == HEAD
    assert_same(catalog(db_url), installed_catalog)
    assert not exists(db_url, "jobqueue_migrate_check.job")


def test_migrate_keeps_the_jobs_of_a_database_set_up_by_install_schema(db_url: str) -> None:
    forget_revision(db_url)
    execute(
        db_url, "insert into worker.job (id, type, payload, origin) values (gen_random_uuid(), 't', '1', 'o')"
    )
    migrate(db_url)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from worker.job").fetchone() == (1,)


def test_migrate_refuses_an_unversioned_schema_that_differs(db_url: str) -> None:
    forget_revision(db_url)
    execute(db_url, "alter table worker.job drop column error_data")
    with pytest.raises(SchemaMismatchError, match="error_data"):
        migrate(db_url)
    assert current_revision(db_url) is None
    assert not exists(db_url, f"public.{VERSION_TABLE}")  # the failed attempt was rolled back
    assert not exists(db_url, "jobqueue_migrate_check.job")


def test_downgrade_drops_a_schema_set_up_by_install_schema(db_url: str) -> None:
    downgrade(db_url)
    assert not catalog(db_url)["schema"]
    assert current_revision(db_url) is None


# --- connections, URLs, logging ---------------------------------------------------------------


@pytest.mark.parametrize(
    "conninfo",
    [
        "postgresql://u:p%40ss%3Aw%2Frd@db.example.com:6543/app?sslmode=require&application_name=x",
        "host=/var/run/postgresql dbname=app user=u password='p w%d'",
        "postgresql://u@/app?host=/tmp/sock",
        "host=a,b port=5432,5433 dbname=app connect_timeout=3",
        "postgresql://[::1]:5432/app",
        "postgresql:///app",
    ],
)
def test_sqlalchemy_url_hands_libpq_the_same_parameters(conninfo: str) -> None:
    url = sqlalchemy_url(conninfo)
    assert url.drivername == "postgresql+psycopg"
    for rendered in (url, sa.make_url(url.render_as_string(hide_password=False))):
        # SQLAlchemy's dialect methods carry no annotations.
        _, kwargs = sa_psycopg.dialect().create_connect_args(rendered)  # type: ignore[no-untyped-call]
        assert {k: str(v) for k, v in kwargs.items()} == conninfo_to_dict(conninfo)


def test_migrate_uses_the_database_url_from_the_environment(
    make_db: MakeDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_db()
    monkeypatch.setenv("JOBQUEUE_DATABASE_URL", url)
    migrate()
    assert current_revision() == HEAD


def test_migrate_never_logs_the_password(make_db: MakeDb, caplog: pytest.LogCaptureFixture) -> None:
    url = make_db() + " password=s3cret-pw"  # the test servers trust local connections
    with caplog.at_level(logging.DEBUG):
        migrate(url)
        downgrade(url)
    assert "jobworker_pg._migrate" in {record.name for record in caplog.records}
    assert "s3cret-pw" not in caplog.text


def test_migrate_joins_the_transaction_of_a_given_connection(make_db: MakeDb) -> None:
    url = make_db()
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))  # a transaction is open: the caller's to end
            migrate(connection)
            assert current_revision(connection) == HEAD
            connection.rollback()
    finally:
        engine.dispose()
    assert current_revision(url) is None
    assert not catalog(url)["schema"]


# --- the script directory, and running it from a user's alembic environment ---------------


def test_migrations_location_is_a_script_directory_with_one_head() -> None:
    location = Path(migrations_location())
    assert (location / "env.py").is_file()
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD]
    # One chain, the same that install_schema walks (jobworker_pg._chain), from 0001.
    revisions = [rev.revision for rev in script.walk_revisions()]
    assert revisions == [r.id for r in reversed(revision_chain())]
    assert (revisions[0], revisions[-1]) == (HEAD, "jobqueue_0001")


def test_alembic_offline_mode_emits_the_sql(make_db: MakeDb, capsys: pytest.CaptureFixture[str]) -> None:
    command.upgrade(alembic_config(make_db()), "head", sql=True)
    out = capsys.readouterr().out
    assert "pg_advisory_xact_lock" in out
    assert "create table if not exists worker.job" in out
    assert f"INSERT INTO public.{VERSION_TABLE}" in out


USER_REVISION = """
    from alembic import op

    revision = "user_0001"
    down_revision = None
    branch_labels = None
    depends_on = None


    def upgrade() -> None:
        op.execute("create table app_thing (id int)")


    def downgrade() -> None:
        op.execute("drop table app_thing")
"""

USER_ENV = """
    from alembic import context
    from sqlalchemy import engine_from_config, pool

    import jobworker_pg._migrate

    config = context.config
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with connectable.connect() as connection:
        if config.attributes.get("with_jobqueue"):
            jobworker_pg._migrate.migrate(connection)
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()
"""


def user_alembic_config(tmp_path: Path, url: str, **options: str) -> Config:
    """A user's own alembic environment in tmp_path, with one revision of its own."""
    (tmp_path / "versions").mkdir()
    (tmp_path / "env.py").write_text(textwrap.dedent(USER_ENV))
    (tmp_path / "versions" / "user_0001.py").write_text(textwrap.dedent(USER_REVISION))
    config = Config()
    config.set_main_option("script_location", str(tmp_path))
    url_text = sqlalchemy_url(url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url_text.replace("%", "%%"))  # configparser escaping
    for key, value in options.items():
        config.set_main_option(key, value)
    return config


def versions(url: str, table: str) -> list[Any]:
    with psycopg.connect(url) as conn:
        return sorted(row[0] for row in conn.execute(f"select version_num from public.{table}").fetchall())


def test_migrate_from_a_users_env_py_keeps_both_histories(
    make_db: MakeDb, installed_catalog: Catalog, tmp_path: Path
) -> None:
    url = make_db()
    config = user_alembic_config(tmp_path, url)
    config.attributes["with_jobqueue"] = True
    command.upgrade(config, "head")
    command.upgrade(config, "head")
    assert versions(url, "alembic_version") == ["user_0001"]
    assert versions(url, VERSION_TABLE) == [HEAD]
    assert exists(url, "public.app_thing")
    assert_same(catalog(url), installed_catalog)


def test_revisions_as_a_branch_in_a_users_version_locations(
    make_db: MakeDb, installed_catalog: Catalog, tmp_path: Path
) -> None:
    url = make_db()
    locations = f"{tmp_path / 'versions'};jobworker_pg:migrations/versions"
    config = user_alembic_config(tmp_path, url, path_separator=";", version_locations=locations)
    command.upgrade(config, "heads")
    assert versions(url, "alembic_version") == [HEAD, "user_0001"]
    assert_same(catalog(url), installed_catalog)
    command.downgrade(config, "jobqueue@base")
    assert versions(url, "alembic_version") == ["user_0001"]
    assert not catalog(url)["schema"]
