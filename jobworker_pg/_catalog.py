"""Comparing schemas: a schema's catalog as text, and the catalog a SQL script builds.

Two databases have the same schema when their catalogs are equal; tests compare
worker.sql with the migration chain this way, and install_schema and migrate use it
to tell which revision an unversioned ``worker`` schema is at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import psycopg

from jobqueue import DatabaseError

SCHEMA = "worker"
# Where a script is built (and rolled back) to compare a database's schema with.
_SCRATCH_SCHEMA = "jobqueue_migrate_check"
# What moves a script into the scratch schema: the schema it creates and the names it
# qualifies (in code and in literals like 'worker.job'::regclass); other text keeps "worker".
_CREATE_SCHEMA = re.compile(r"(\bschema\s+(?:if\s+not\s+exists\s+)?)worker\b", re.IGNORECASE)
_QUALIFIED = re.compile(r"\bworker(?=\.)")

# A catalog: section name -> sorted rows, each row one line of text.
Catalog = dict[str, list[str]]


class SchemaMismatchError(DatabaseError):
    """The database has a ``worker`` schema with no migration history that is the schema of no
    revision of this version of pg-jobqueue (or a revision it does not know), so it can be
    neither stamped nor upgraded; nothing was changed."""


def built_catalogs(conn: psycopg.Connection[Any], scripts: Iterable[str]) -> list[Catalog]:
    """The catalog after each of ``scripts``, run one after another in a scratch schema on
    this server, then rolled back (a savepoint of the open transaction)."""
    catalogs: list[Catalog] = []
    conn.execute(f"savepoint {_SCRATCH_SCHEMA}")
    try:
        for script in scripts:
            sql_text = _QUALIFIED.sub(_SCRATCH_SCHEMA, _CREATE_SCHEMA.sub(rf"\1{_SCRATCH_SCHEMA}", script))
            conn.execute(sql_text.encode())
            catalog = schema_catalog(conn, _SCRATCH_SCHEMA)
            renamed = {
                section: [row.replace(_SCRATCH_SCHEMA, SCHEMA) for row in rows]
                for section, rows in catalog.items()
            }
            catalogs.append(renamed)
        return catalogs
    finally:
        conn.execute(f"rollback to savepoint {_SCRATCH_SCHEMA}")
        conn.execute(f"release savepoint {_SCRATCH_SCHEMA}")


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
    """One line per row that is in only one of two catalogs; empty when they are equal.

    What ``a`` lacks comes first: one missing column shifts the position of every later one,
    and the cause should lead a message that is cut short.
    """
    missing: list[str] = []
    extra: list[str] = []
    for section in sorted(a.keys() | b.keys()):
        rows_a, rows_b = set(a.get(section, [])), set(b.get(section, []))
        missing += [f"{section}: only in {b_name}: {row}" for row in sorted(rows_b - rows_a)]
        extra += [f"{section}: only in {a_name}: {row}" for row in sorted(rows_a - rows_b)]
    return missing + extra
