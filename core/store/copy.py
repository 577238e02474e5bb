"""`fleetbot migrate`: a SQLite store copied into an empty PostgreSQL database, as it is.

Every table of the schema, every row, every id; then each identity sequence set past the ids
copied, so new rows do not collide with them. One transaction on the target: a copy that fails
leaves it as it was. The source is read in one snapshot. The key ring and the token files are
files beside the store (auth.keyring, auth.token_dir), not rows in it: nothing here touches them.

Tables go parents first. PostgreSQL's foreign keys here are NOT DEFERRABLE (SQLite's check each
statement too), so `SET CONSTRAINTS ALL DEFERRED` would not reach them, and switching them off
(session_replication_role) takes a superuser; copying in dependency order needs neither. The
schema's own triggers (a run's company, the per-company heartbeat totals) are off during the
copy: what they would derive is copied itself, and firing them would count heartbeats twice.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
from pydantic import ValidationError

from core.config.base import SecretRef
from core.config.schema import StorageConfig
from core.errors import ConfigError, StoreError
from core.store.db import Database, fetch_all
from core.store.engines import database_for
from core.store.postgres import PgConn, PostgresDatabase, redact
from core.store.schema import SCHEMA_VERSION
from core.store.sqlite import SqliteDatabase

BATCH = 5000  # rows per COPY: a few MB at most, and few round trips
BOOKKEEPING = "fleetbot_schema"  # PostgreSQL's schema version, not data
# Not copied: the schema version, and who leads and lives (the source's own processes, gone by
# the time the target is in use; the target's replicas write their own).
NOT_DATA = frozenset({BOOKKEEPING, "leader_lease", "replicas"})


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # PostgreSQL's data_type: bigint, double precision, text
    identity: bool


@dataclass(frozen=True, slots=True)
class Copied:
    """What `migrate_store` did: from where to where, and the rows per table in copy order."""

    source: str
    target: str
    version: int
    rows: dict[str, int]


async def migrate_store(
    storage: StorageConfig,
    url: str,
    *,
    password_env: str | None = None,
    password_file: Path | None = None,
    env: Mapping[str, str],
    replace: bool = False,
) -> Copied:
    """The config's SQLite store copied into the PostgreSQL database at `url`. Both are opened
    as `fleetbot run` opens them (migrated, and held: a running bot on either is refused)."""
    if storage.is_postgres:
        raise StoreError(
            f"storage already names PostgreSQL ({redact(str(storage.url))}); migrate copies a "
            "SQLite store. Point -c at the config whose storage.path is the SQLite file."
        )
    if not storage.path.is_file():
        raise StoreError(
            f"{storage.path}: no such SQLite file (storage.path in the config), so nothing to "
            "copy. Check -c names the config `fleetbot run` uses."
        )
    target = _target(url, password_env, password_file, env)
    async with (
        database_for(storage, env, exclusive=True) as source,
        database_for(target, env, exclusive=True) as pg,
    ):
        rows = await copy_store(source, pg, replace=replace)
        return Copied(source.where, pg.where, SCHEMA_VERSION, rows)


def _target(
    url: str, password_env: str | None, password_file: Path | None, env: Mapping[str, str]
) -> StorageConfig:
    """The target as a storage section, under the config's own rules (no password in it)."""
    given = password_env is not None or password_file is not None
    try:
        password = SecretRef(env=password_env, file=password_file) if given else None
        target = StorageConfig(url=url, password=password)
    except ValidationError as exc:
        reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{redact(url)}: {reason}") from None
    if not target.is_postgres:
        raise ConfigError(f"{redact(url)}: write postgresql://user@host:5432/database")
    if password is not None and password.resolve(env) is None:
        raise StoreError(
            f"the password for {redact(url)} is to come from {password.describe()}, which is "
            "unset or empty: put the PostgreSQL user's password there."
        )
    return target


async def copy_store(
    source: Database, target: Database, *, replace: bool = False
) -> dict[str, int]:
    """Every row of the open SQLite `source` into the open, empty PostgreSQL `target`, in one
    transaction; rows per table, parents first. StoreError, and nothing copied, if the
    schemas differ or the target holds rows (unless `replace`: then they are deleted first)."""
    if not isinstance(source, SqliteDatabase) or not isinstance(target, PostgresDatabase):
        raise StoreError(
            f"a copy goes from SQLite into PostgreSQL, not from {source.engine} into "
            f"{target.engine}"
        )
    reader = source.reader
    await reader.execute("BEGIN")  # one snapshot of the source, whatever else writes to it
    try:
        async with target.write() as conn:
            try:
                return await _copy(source, reader, target, conn, replace)
            except asyncpg.PostgresError as exc:  # a catalog query, TRUNCATE, ALTER TABLE
                raise StoreError(
                    f"{target.where}: the copy failed ({type(exc).__name__}: {exc}) and was "
                    "rolled back, so nothing was copied. fleetbot's user must own the tables "
                    "(it does when fleetbot created them)."
                ) from exc
    finally:
        await reader.execute("ROLLBACK")


async def _copy(
    source: SqliteDatabase,
    reader: aiosqlite.Connection,
    target: PostgresDatabase,
    conn: PgConn,
    replace: bool,
) -> dict[str, int]:
    await _same_version(source, reader, target, conn)
    tables = await _pg_tables(conn)
    await _same_tables(source, reader, target, tables)
    order = await _parents_first(conn, tables)
    await _empty_or_emptied(target, conn, order, replace)
    triggers = await _triggers(conn)
    for table, name in triggers:
        await conn.execute(f"ALTER TABLE {_ident(table)} DISABLE TRIGGER {_ident(name)}")
    rows = {t: await _copy_table(source, reader, target, conn, t, tables[t]) for t in order}
    for table, name in triggers:
        await conn.execute(f"ALTER TABLE {_ident(table)} ENABLE TRIGGER {_ident(name)}")
    await _past_copied_ids(reader, conn, tables)
    return rows


async def _same_version(
    source: SqliteDatabase, reader: aiosqlite.Connection, target: PostgresDatabase, conn: PgConn
) -> None:
    ours = int((await fetch_all(reader, "PRAGMA user_version"))[0][0])
    theirs = int((await conn.execute_fetchall(f"SELECT version FROM {BOOKKEEPING}"))[0][0])
    if ours != theirs:
        raise StoreError(
            f"{source.where} is at schema version {ours} and {target.where} at {theirs}; a "
            "copy needs both at the same one, so nothing was copied. Open each with this "
            f"fleetbot (schema version {SCHEMA_VERSION}), e.g. `fleetbot check`, and copy again."
        )


async def _pg_tables(conn: PgConn) -> dict[str, list[Column]]:
    found = await conn.execute_fetchall(
        "SELECT c.table_name, c.column_name, c.data_type, c.is_identity = 'YES'"
        " FROM information_schema.columns c JOIN information_schema.tables t"
        " ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
        " ORDER BY c.table_name, c.ordinal_position"
    )
    tables: dict[str, list[Column]] = {}
    for table, name, kind, identity in found:
        if table not in NOT_DATA:
            tables.setdefault(table, []).append(Column(name, kind, bool(identity)))
    return tables


async def _same_tables(
    source: SqliteDatabase,
    reader: aiosqlite.Connection,
    target: PostgresDatabase,
    tables: Mapping[str, Sequence[Column]],
) -> None:
    """StoreError naming what one schema has and the other lacks: tables, then columns."""
    found = await fetch_all(
        reader, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    theirs: dict[str, set[str]] = {}
    for (table,) in found:
        if table in NOT_DATA:
            continue
        info = await fetch_all(reader, f"PRAGMA table_info({_ident(table)})")
        theirs[table] = {row["name"] for row in info}
    ours = {table: {c.name for c in columns} for table, columns in tables.items()}
    difference = _difference(theirs.keys(), ours.keys(), "tables")
    if not difference:
        difference = "; ".join(
            f"{table}: {_difference(theirs[table], ours[table], 'columns')}"
            for table in sorted(ours)
            if theirs[table] != ours[table]
        )
    if difference:
        raise StoreError(
            f"{source.where} and {target.where} hold different schemas ({difference}), so "
            "nothing was copied. Both come from fleetbot's own migrations: report this as a bug."
        )


def _difference(sqlite: Iterable[str], postgres: Iterable[str], what: str) -> str:
    lite, pg = set(sqlite), set(postgres)
    only = (("SQLite", lite - pg), ("PostgreSQL", pg - lite))
    return "; ".join(f"{what} only in {e}: {', '.join(sorted(x))}" for e, x in only if x)


async def _parents_first(conn: PgConn, tables: Mapping[str, Sequence[Column]]) -> list[str]:
    found = await conn.execute_fetchall(
        "SELECT c.relname, p.relname FROM pg_constraint k"
        " JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid"
        " WHERE k.contype = 'f' AND c.relnamespace = current_schema()::regnamespace"
    )
    parents: dict[str, set[str]] = {table: set() for table in sorted(tables)}
    for child, parent in found:
        if child != parent:  # a row referring to its own table is checked per COPY statement
            parents[child].add(parent)
    try:
        return list(TopologicalSorter(parents).static_order())
    except CycleError as exc:
        raise StoreError(
            f"the foreign keys form a circle ({' → '.join(exc.args[1])}): no order of tables "
            "copies them. Report this as a bug."
        ) from None


async def _empty_or_emptied(
    target: PostgresDatabase, conn: PgConn, tables: Sequence[str], replace: bool
) -> None:
    full = [
        table
        for table in tables
        if (await conn.execute_fetchall(f"SELECT EXISTS (SELECT 1 FROM {_ident(table)})"))[0][0]
    ]
    if full and not replace:
        raise StoreError(
            f"{target.where} already holds fleetbot data (rows in {', '.join(full)}); a copy goes "
            "into an empty database only, so nothing was copied. Copy into a new database, or "
            "delete what this one holds and copy over it (`fleetbot migrate --replace`)."
        )
    if full:
        await conn.execute(f"TRUNCATE {', '.join(map(_ident, tables))} RESTART IDENTITY")


async def _triggers(conn: PgConn) -> list[tuple[str, str]]:
    """(table, trigger) for every enabled trigger of the schema's own (not a foreign key's)."""
    found = await conn.execute_fetchall(
        "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'"
        " AND c.relnamespace = current_schema()::regnamespace ORDER BY 1, 2"
    )
    return [(table, name) for table, name in found]


async def _copy_table(
    source: SqliteDatabase,
    reader: aiosqlite.Connection,
    target: PostgresDatabase,
    conn: PgConn,
    table: str,
    columns: Sequence[Column],
) -> int:
    names = [c.name for c in columns]
    fits = [_FITS.get(c.type, _as_is) for c in columns]
    select = f"SELECT {', '.join(map(_ident, names))} FROM {_ident(table)}"
    copied = 0
    async with reader.execute(select) as cursor:
        while batch := await cursor.fetchmany(BATCH):
            records = [_record(source, table, columns, fits, row) for row in batch]
            try:
                copied += await conn.copy_records(table, names, records)
            except asyncpg.PostgresError as exc:
                raise StoreError(
                    f"{target.where} refused a row of {table} ({type(exc).__name__}: {exc}), "
                    f"so nothing was copied. Find it in {source.where}, fix or delete it, and "
                    "copy again."
                ) from exc
    return copied


async def _past_copied_ids(
    reader: aiosqlite.Connection, conn: PgConn, tables: Mapping[str, Sequence[Column]]
) -> None:
    """Each identity sequence past the largest id copied, or past the largest SQLite ever gave
    (sqlite_sequence: an AUTOINCREMENT table's ids are never reused, even once deleted)."""
    given: dict[str, int] = {}
    if await fetch_all(reader, "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"):
        given = {r[0]: int(r[1]) for r in await fetch_all(reader, "SELECT * FROM sqlite_sequence")}
    for table, columns in tables.items():
        for column in (c for c in columns if c.identity):
            found = await conn.execute_fetchall(
                f"SELECT max({_ident(column.name)}) FROM {_ident(table)}"
            )
            top = max(found[0][0] or 0, given.get(table, 0))
            if top > 0:
                await conn.execute(
                    "SELECT setval(pg_get_serial_sequence(?, ?), ?)",
                    (_ident(table), column.name, top),
                )


class _Unfit(ValueError):
    """A SQLite value that the PostgreSQL column cannot hold without changing it."""


def _bigint(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _Unfit


def _double(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    raise _Unfit


def _text(value: Any) -> str:
    if isinstance(value, str):
        # NUL kept as U+FFFD, as the PostgreSQL store keeps it (core.store.postgres._text).
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, int | float):
        return str(value)
    raise _Unfit


def _as_is(value: Any) -> Any:
    return value


# SQLite keeps a value's own type whatever its column's (an integral REAL reads back as an int
# from some files, a number as text); PostgreSQL's COPY takes only the column's.
_FITS: dict[str, Callable[[Any], Any]] = {
    "bigint": _bigint,
    "double precision": _double,
    "text": _text,
}


def _record(
    source: SqliteDatabase,
    table: str,
    columns: Sequence[Column],
    fits: Sequence[Callable[[Any], Any]],
    row: Sequence[Any],
) -> tuple[Any, ...]:
    try:
        return tuple(None if v is None else fit(v) for fit, v in zip(fits, row, strict=True))
    except _Unfit:
        pass
    for column, fit, value in zip(columns, fits, row, strict=True):
        try:
            if value is not None:
                fit(value)
        except _Unfit:
            key = f" (id {row[0]!r})" if columns[0].name == "id" else ""
            raise StoreError(
                f"{source.where}: {table}.{column.name} holds {reprlib.repr(value)}{key}, which "
                f"a PostgreSQL {column.type} column cannot hold as it is, so nothing was "
                "copied. Fix the row in the SQLite file and copy again."
            ) from None
    raise AssertionError("unreachable: some column did not fit")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
