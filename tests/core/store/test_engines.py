"""The two engines hold the same schema, and PostgreSQL's placeholder rewriting.

SQLite's schema is core.store.schema.MIGRATIONS replayed; PostgreSQL's is core.store.pg_schema
(BASELINE, then its MIGRATIONS). Each is read back from the engine's own catalog into the same
plain description (tables, columns, keys, indexes, CHECKed value sets, foreign keys, triggers),
so a change made to one engine only fails here with a line naming what differs. Engine
bookkeeping (sqlite_sequence, fleetbot_schema) is left out.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import store_helpers

from core.store import heartbeats
from core.store.db import Database
from core.store.postgres import placeholders
from core.store.sqlite import SqliteDatabase

BOOKKEEPING = {"fleetbot_schema", "sqlite_sequence"}
SQLITE_TYPES = {"INTEGER": "bigint", "REAL": "double precision", "TEXT": "text"}


@dataclass
class Schema:
    """One engine's schema in terms both engines share."""

    engine: str
    # table -> column -> (type, NOT NULL, has a default)
    columns: dict[str, dict[str, tuple[str, bool, bool]]] = field(default_factory=dict)
    primary_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unique: dict[str, set[tuple[str, ...]]] = field(default_factory=dict)
    # index name -> (table, columns, unique, partial index predicate or "")
    indexes: dict[str, tuple[str, tuple[str, ...], bool, str]] = field(default_factory=dict)
    # table -> {(column, "in", values) or (column, "between", (low, high))}
    checks: dict[str, set[tuple[str, str, Any]]] = field(default_factory=dict)
    # table -> {(columns, referenced table, referenced columns)}
    foreign_keys: dict[str, set[tuple[tuple[str, ...], str, tuple[str, ...]]]] = field(
        default_factory=dict
    )
    triggers: set[tuple[str, str]] = field(default_factory=set)  # (name, table)


def predicate(sql: str) -> str:
    """A partial index's WHERE, spelt the same whichever engine printed it."""
    text = re.sub(r"::[a-z ]+?(?=[)\s,]|$)", "", sql.lower())
    return " ".join(text.replace("(", " ").replace(")", " ").split())


# -- SQLite --------------------------------------------------------------------------------------

_SQLITE_IN = re.compile(r"CHECK\s*\(\s*(\w+)\s+IN\s*\(([^)]*)\)\s*\)", re.I)
_SQLITE_BETWEEN = re.compile(r"CHECK\s*\(\s*(\w+)\s+BETWEEN\s+(-?\d+)\s+AND\s+(-?\d+)\s*\)", re.I)


def _sqlite_checks(table_sql: str) -> set[tuple[str, str, Any]]:
    found: set[tuple[str, str, Any]] = set()
    for m in _SQLITE_IN.finditer(table_sql):
        found.add((m[1], "in", frozenset(re.findall(r"'([^']*)'", m[2]))))
    for m in _SQLITE_BETWEEN.finditer(table_sql):
        found.add((m[1], "between", (int(m[2]), int(m[3]))))
    read = len(_SQLITE_IN.findall(table_sql)) + len(_SQLITE_BETWEEN.findall(table_sql))
    if read != len(re.findall(r"\bCHECK\b", table_sql, re.I)):
        found.add(("?", "a CHECK this test cannot read", table_sql))
    return found


def sqlite_schema(path: Path) -> Schema:
    schema = Schema("SQLite")
    conn = sqlite3.connect(path)
    try:
        tables = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall()
        for table, table_sql in tables:
            if table in BOOKKEEPING:
                continue
            info = conn.execute(f"PRAGMA table_info({table})").fetchall()
            schema.columns[table] = {
                name: (
                    SQLITE_TYPES.get(kind.upper(), f"SQLite {kind}"),
                    bool(nn or pk),
                    d is not None,
                )
                for _, name, kind, nn, d, pk in info
            }
            schema.primary_keys[table] = tuple(
                r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]
            )
            schema.unique[table] = set()
            for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
                columns = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({name})"))
                if origin == "u":
                    schema.unique[table].add(columns)
                elif origin == "c":
                    (index_sql,) = conn.execute(
                        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
                    ).fetchone()
                    where = re.split(r"\bWHERE\b", index_sql, flags=re.I)[1] if partial else ""
                    schema.indexes[name] = (table, columns, bool(unique), predicate(where))
            schema.checks[table] = _sqlite_checks(table_sql)
            keys: dict[int, list[tuple[str, str, str]]] = {}
            for fk_id, _, ref, col, ref_col, *_ in conn.execute(
                f"PRAGMA foreign_key_list({table})"
            ):
                keys.setdefault(fk_id, []).append((col, ref, ref_col))
            schema.foreign_keys[table] = {
                (tuple(c for c, _, _ in k), k[0][1], tuple(r for _, _, r in k))
                for k in keys.values()
            }
        schema.triggers = set(
            conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'")
        )
    finally:
        conn.close()
    return schema


# -- PostgreSQL ----------------------------------------------------------------------------------

_PG_IN = re.compile(r"^CHECK \(\((\w+) = ANY \(ARRAY\[(.*)\]\)\)\)$")
_PG_BETWEEN = re.compile(r"^CHECK \(\(\((\w+) >= (-?\d+)\) AND \((\w+) <= (-?\d+)\)\)\)$")
_COLUMNS_OF = """
    SELECT array_agg(a.attname ORDER BY k.i) FROM unnest({keys}) WITH ORDINALITY k(n, i)
    JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.n
"""


def _pg_check(definition: str) -> tuple[str, str, Any]:
    if m := _PG_IN.match(definition):
        return (m[1], "in", frozenset(re.findall(r"'([^']*)'::text", m[2])))
    if (m := _PG_BETWEEN.match(definition)) and m[1] == m[3]:
        return (m[1], "between", (int(m[2]), int(m[4])))
    return ("?", "a CHECK this test cannot read", definition)


async def pg_schema(url: str) -> Schema:
    import asyncpg

    schema = Schema("PostgreSQL")
    conn = await asyncpg.connect(url)
    try:
        for r in await conn.fetch(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public'"
        ):
            if r["table_name"] in BOOKKEEPING:
                continue
            schema.columns.setdefault(r["table_name"], {})[r["column_name"]] = (
                r["data_type"],
                r["is_nullable"] == "NO",
                r["column_default"] is not None,
            )
        for table in schema.columns:
            schema.unique[table] = set()
            schema.checks[table] = set()
            schema.foreign_keys[table] = set()
            schema.primary_keys[table] = ()
        constraints = await conn.fetch(
            "SELECT c.conrelid::regclass::text AS tbl, c.contype, pg_get_constraintdef(c.oid) d, "
            f"({_COLUMNS_OF.format(keys='c.conkey', rel='c.conrelid')}) AS cols, "
            "c.confrelid::regclass::text AS ref, "
            f"({_COLUMNS_OF.format(keys='c.confkey', rel='c.confrelid')}) AS ref_cols "
            "FROM pg_constraint c WHERE c.connamespace = 'public'::regnamespace"
        )
        for r in constraints:
            table, kind = r["tbl"], r["contype"].decode()
            if table in BOOKKEEPING:
                continue
            if kind == "p":
                schema.primary_keys[table] = tuple(r["cols"])
            elif kind == "u":
                schema.unique[table].add(tuple(r["cols"]))
            elif kind == "c":
                schema.checks[table].add(_pg_check(r["d"]))
            elif kind == "f":
                schema.foreign_keys[table].add((tuple(r["cols"]), r["ref"], tuple(r["ref_cols"])))
            else:
                schema.checks[table].add(("?", f"a constraint of kind {kind}", r["d"]))
        for r in await conn.fetch(
            "SELECT i.indexrelid::regclass::text AS name, i.indrelid::regclass::text AS tbl, "
            "i.indisunique, pg_get_expr(i.indpred, i.indrelid) AS pred, "
            f"({_COLUMNS_OF.format(keys='i.indkey', rel='i.indrelid')}) AS cols "
            "FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE t.relnamespace = 'public'::regnamespace AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
        ):
            schema.indexes[r["name"]] = (
                r["tbl"],
                tuple(r["cols"]),
                r["indisunique"],
                predicate(r["pred"] or ""),
            )
        schema.triggers = {
            (r[0], r[1])
            for r in await conn.fetch(
                "SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal"
            )
        }
    finally:
        await conn.close()
    return schema


# -- the comparison ------------------------------------------------------------------------------


def differences(a: Schema, b: Schema) -> list[str]:
    """One line per difference, naming the table, column, index or trigger."""
    out: list[str] = []

    def only(kind: str, names: set[Any]) -> None:
        for name in sorted(names, key=str):
            out.append(kind.format(name=name))

    ta, tb = set(a.columns), set(b.columns)
    only(f"table {{name}}: only in {a.engine}", ta - tb)
    only(f"table {{name}}: only in {b.engine}", tb - ta)
    for table in sorted(ta & tb):
        ca, cb = a.columns[table], b.columns[table]
        only(f"column {table}.{{name}}: only in {a.engine}", set(ca) - set(cb))
        only(f"column {table}.{{name}}: only in {b.engine}", set(cb) - set(ca))
        for col in sorted(set(ca) & set(cb)):
            if ca[col] != cb[col]:
                out.append(
                    f"column {table}.{col}: (type, NOT NULL, has a default) is {ca[col]} on "
                    f"{a.engine} but {cb[col]} on {b.engine}"
                )
        facts: list[tuple[str, Any, Any]] = [
            ("primary key", a.primary_keys[table], b.primary_keys[table]),
            ("unique constraints", a.unique[table], b.unique[table]),
            ("CHECKs", a.checks[table], b.checks[table]),
            ("foreign keys", a.foreign_keys[table], b.foreign_keys[table]),
        ]
        for what, fa, fb in facts:
            if fa != fb:
                if isinstance(fa, set):
                    fa, fb = sorted(fa - fb, key=str), sorted(fb - fa, key=str)
                out.append(f"{what} of {table}: {a.engine} has {fa}, {b.engine} has {fb}")
    ia, ib = set(a.indexes), set(b.indexes)
    only(f"index {{name}}: only in {a.engine}", ia - ib)
    only(f"index {{name}}: only in {b.engine}", ib - ia)
    for name in sorted(ia & ib):
        if a.indexes[name] != b.indexes[name]:
            out.append(
                f"index {name}: (table, columns, unique, WHERE) is {a.indexes[name]} on "
                f"{a.engine} but {b.indexes[name]} on {b.engine}"
            )
    only(f"trigger {{name}}: only in {a.engine}", a.triggers - b.triggers)
    only(f"trigger {{name}}: only in {b.engine}", b.triggers - a.triggers)
    return out


async def migrated_sqlite(path: Path) -> Schema:
    async with SqliteDatabase(path):
        pass
    return sqlite_schema(path)


@pytest.mark.postgres_only
async def test_the_postgresql_schema_is_the_sqlite_schema(tmp_path: Path) -> None:
    sqlite = await migrated_sqlite(tmp_path / "parity.db")
    url = store_helpers.storage(tmp_path, "parity")["url"]  # migrated by PostgresDatabase
    pg = await pg_schema(url)
    assert len(sqlite.columns) > 20 and len(sqlite.indexes) > 20  # the catalog was read
    assert differences(sqlite, pg) == []


@pytest.mark.postgres_only
async def test_an_index_or_table_on_postgresql_only_is_named(tmp_path: Path) -> None:
    import asyncpg

    sqlite = await migrated_sqlite(tmp_path / "parity.db")
    url = store_helpers.storage(tmp_path, "parity")["url"]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE INDEX runs_model ON runs(model) WHERE ended_at IS NULL;"
            "CREATE TABLE extra (id bigint PRIMARY KEY);"
            "ALTER TABLE agents ALTER COLUMN reason DROP DEFAULT;"
            "ALTER TABLE outbox DROP CONSTRAINT outbox_state_check;"
            "ALTER TABLE outbox ADD CHECK (state IN ('pending','sent'))"
        )
    finally:
        await conn.close()
    found = "\n".join(differences(sqlite, await pg_schema(url)))
    assert "index runs_model: only in PostgreSQL" in found
    assert "table extra: only in PostgreSQL" in found
    assert "column agents.reason: (type, NOT NULL, has a default) is ('text', True, True)" in found
    assert "CHECKs of outbox" in found and "'coalesced'" in found
    assert len(found.splitlines()) == 4, found


async def test_an_index_or_check_on_sqlite_only_is_named(tmp_path: Path) -> None:
    one = await migrated_sqlite(tmp_path / "one.db")
    path = tmp_path / "two.db"
    async with SqliteDatabase(path) as db, db.write() as conn:
        await conn.execute("CREATE INDEX issues_title ON issues(title)")
        await conn.execute("CREATE UNIQUE INDEX runs_one ON runs(agent_id) WHERE ended_at > 0")
        await conn.execute(
            "CREATE TABLE extra (id INTEGER PRIMARY KEY, v TEXT CHECK (v IN ('a','b')))"
        )
        await conn.execute("DROP TRIGGER runs_company")
    two = sqlite_schema(path)
    two.engine = "the changed SQLite"
    assert sorted(differences(one, two)) == [
        "index issues_title: only in the changed SQLite",
        "index runs_one: only in the changed SQLite",
        "table extra: only in the changed SQLite",
        "trigger ('runs_company', 'runs'): only in SQLite",
    ]


def test_partial_index_predicates_read_the_same_from_either_catalog() -> None:
    assert predicate("(status = 'running'::text)") == predicate(" status = 'running'")
    assert predicate("(deleted_at IS NULL)") == "deleted_at is null"
    assert predicate("(paused = 0)") == predicate("paused = 0")
    assert predicate("(status = 'done'::text)") != predicate("status = 'open'")


def test_checks_read_the_same_from_either_catalog() -> None:
    sqlite = _sqlite_checks(
        "CREATE TABLE t (s TEXT CHECK (s IN ('a','b')), p INTEGER CHECK (p BETWEEN 0 AND 3))"
    )
    pg = {
        _pg_check("CHECK ((s = ANY (ARRAY['a'::text, 'b'::text])))"),
        _pg_check("CHECK (((p >= 0) AND (p <= 3)))"),
    }
    assert sqlite == pg == {("s", "in", frozenset({"a", "b"})), ("p", "between", (0, 3))}
    assert _pg_check("CHECK ((length(s) > 0))")[0] == "?"  # unread: a difference, not a pass
    assert next(iter(_sqlite_checks("CREATE TABLE t (s TEXT CHECK (length(s) > 0))")))[:2] == (
        "?",
        "a CHECK this test cannot read",
    )


# -- triggers, on the suite's engine -------------------------------------------------------------

NOW = 1_767_225_600.0  # 2026-01-01
DAY = "2026-01-01"


async def _totals(db: Database) -> dict[tuple[str, str], int]:
    found = await db.fetchall("SELECT company_id, outcome, count FROM company_heartbeats")
    return {(r[0], r[1]): r[2] for r in found if r[2]}


async def test_triggers_keep_company_totals_and_fill_a_runs_company(db: Database) -> None:
    async with db.write() as conn:
        for company in ("c1", "c2"):
            await conn.execute(
                "INSERT INTO companies (id, name, prefix) VALUES (?, ?, ?)",
                (company, company, company.upper()),
            )
        for agent, company in (("a1", "c1"), ("a2", "c1"), ("b1", "c2")):
            await conn.execute(
                "INSERT INTO agents (id, company_id, name, role, status_changed_at, model, "
                "heartbeat_seconds, next_heartbeat_at, max_turns, run_timeout_seconds) "
                "VALUES (?, ?, ?, 'cto', 0, 'm', 60, 0, 5, 60)",
                (agent, company, agent),
            )
    async with db.write() as conn:  # inserts, and the upsert's update
        await heartbeats.count(conn, "a1", NOW, "worked")
        await heartbeats.count(conn, "a1", NOW, "worked", 2)
        await heartbeats.count(conn, "a2", NOW, "worked")
        await heartbeats.count(conn, "b1", NOW, "idle", 4)
    assert await _totals(db) == {("c1", "worked"): 4, ("c2", "idle"): 4}
    async with db.write() as conn:
        await conn.execute("UPDATE heartbeats SET count = 10 WHERE agent_id = 'a2'")
    assert await _totals(db) == {("c1", "worked"): 13, ("c2", "idle"): 4}
    async with db.write() as conn:
        await conn.execute("DELETE FROM heartbeats WHERE agent_id = 'a1'")
        await conn.execute("UPDATE heartbeats SET day = '2026-01-02' WHERE agent_id = 'b1'")
    # Moving a row to another day is not counted (only UPDATE OF count is), on both engines.
    assert await _totals(db) == {("c1", "worked"): 10, ("c2", "idle"): 4}

    async with db.write() as conn:
        given: list[tuple[str, str, str | None]] = [("r1", "b1", None), ("r2", "a1", "c2")]
        for run, agent, owner in given:
            await conn.execute(
                "INSERT INTO runs (id, agent_id, status, started_at, deadline, max_turns, model, "
                "last_progress_at, company_id) VALUES (?, ?, 'running', 0, 1, 5, 'm', 0, ?)",
                (run, agent, owner),
            )
    found = await db.fetchall("SELECT id, company_id FROM runs ORDER BY id")
    assert [tuple(r) for r in found] == [("r1", "c2"), ("r2", "c2")]  # a given one is kept


# -- placeholders --------------------------------------------------------------------------------


def test_question_marks_are_numbered_in_order() -> None:
    assert placeholders("SELECT * FROM t WHERE a = ? AND b IN (?, ?)") == (
        "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)",
        None,
    )
    assert placeholders("SELECT 1") == ("SELECT 1", None)


def test_a_name_used_twice_is_one_number() -> None:
    assert placeholders("UPDATE t SET a = :now, b = :id WHERE c < :now") == (
        "UPDATE t SET a = $1, b = $2 WHERE c < $1",
        ("now", "id"),
    )
    assert placeholders("VALUES (:a_1,:b)") == ("VALUES ($1,$2)", ("a_1", "b"))


def test_quotes_and_comments_are_left_alone() -> None:
    sql = (
        "SELECT '?', ':x', \"odd?:col\", a FROM t -- is it ? or :y\n"
        "WHERE b = ? AND c = 'it''s ? :z' AND d = ''"
    )
    assert placeholders(sql) == (
        "SELECT '?', ':x', \"odd?:col\", a FROM t -- is it ? or :y\n"
        "WHERE b = $1 AND c = 'it''s ? :z' AND d = ''",
        None,
    )
    assert placeholders("SELECT 'a''', :n -- :m")[0] == "SELECT 'a''', $1 -- :m"
    assert placeholders('SELECT "a""?" FROM t WHERE x = ?')[0] == (
        'SELECT "a""?" FROM t WHERE x = $1'
    )
    assert placeholders("SELECT 1 -- trailing ?") == ("SELECT 1 -- trailing ?", None)


def test_casts_and_times_are_not_names() -> None:
    assert placeholders("SELECT :v::bigint, x::text, '12:30' WHERE y = :w") == (
        "SELECT $1::bigint, x::text, '12:30' WHERE y = $2",
        ("v", "w"),
    )
    assert placeholders("SELECT a::double precision FROM t WHERE b = ?") == (
        "SELECT a::double precision FROM t WHERE b = $1",
        None,
    )
    assert placeholders("SELECT :1, a : b") == ("SELECT :1, a : b", None)


def test_mixing_question_marks_and_names_is_refused() -> None:
    with pytest.raises(ValueError, match="mixes"):
        placeholders("SELECT ? WHERE a = :a")
    with pytest.raises(ValueError, match="mixes"):
        placeholders("SELECT :a WHERE a = ?")
