"""One SQLite file in WAL mode: a single writer behind a lock, a separate reader.

aiosqlite gives each connection its own thread, so two coroutines sharing one connection would
interleave their statements inside each other's transactions. Writes therefore go through
`write()`, which holds an asyncio lock for the whole `BEGIN IMMEDIATE … COMMIT`; reads use a second
connection and see only committed data.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from core.errors import SchemaTooNew, StoreError
from core.store.schema import MIGRATIONS, SCHEMA_VERSION


async def _configure(conn: aiosqlite.Connection) -> None:
    conn.row_factory = aiosqlite.Row
    await conn.execute("PRAGMA foreign_keys = ON")
    await conn.execute("PRAGMA busy_timeout = 5000")
    # NORMAL is durable across process crashes in WAL mode; only an OS crash can lose the
    # last transactions, and it never corrupts the file.
    await conn.execute("PRAGMA synchronous = NORMAL")


class Database:
    """The store's connections. Use as `async with Database(path) as db:` or `await open()`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> Database:
        if self._writer is not None:
            return self
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = await aiosqlite.connect(self.path, isolation_level=None)
            await _configure(self._writer)
            # Before the switch to WAL, which rewrites the file header: a database from a newer
            # fleetbot must be left exactly as it was.
            await self._check_version()
            mode = await self._scalar(self._writer, "PRAGMA journal_mode = WAL")
            if str(mode).lower() != "wal" and str(self.path) != ":memory:":
                raise StoreError(f"{self.path}: could not switch to WAL mode (got {mode}).")
            await self._migrate()
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await _configure(self._reader)
            await self._reader.execute("PRAGMA query_only = ON")
        except sqlite3.DatabaseError as exc:
            await self.aclose()
            raise StoreError(
                f"{self.path}: not a usable SQLite database ({exc}). Point storage.path at a "
                "fleetbot database or at a new file."
            ) from exc
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @staticmethod
    async def _scalar(conn: aiosqlite.Connection, sql: str, args: Iterable[Any] = ()) -> Any:
        found = list(await conn.execute_fetchall(sql, tuple(args)))  # one hop, see fetchall
        return found[0][0] if found else None

    async def _check_version(self) -> int:
        assert self._writer is not None
        version = int(await self._scalar(self._writer, "PRAGMA user_version"))
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{self.path}: the database has schema version {version}, but this fleetbot "
                f"knows only up to {SCHEMA_VERSION}. Upgrade fleetbot, or point storage.path "
                "at another file; the database was left untouched."
            )
        return version

    async def _migrate(self) -> None:
        assert self._writer is not None
        version = await self._check_version()
        for number in range(version, SCHEMA_VERSION):
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(MIGRATIONS[number]):
                    await self._writer.execute(statement)
                await self._writer.execute(f"PRAGMA user_version = {number + 1}")
                await self._writer.execute("COMMIT")
            except sqlite3.Error as exc:
                await self._writer.execute("ROLLBACK")
                # Not "not a database": the file is fine, this fleetbot's migration is not.
                raise StoreError(
                    f"{self.path}: migration {number + 1} failed ({exc}) and was rolled back; "
                    f"the database stays at schema version {number}. Report this as a bug."
                ) from exc
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSION

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction: everything inside commits together or not at all."""
        conn = self._writer
        if conn is None:
            raise StoreError("the store is closed")
        async with self._lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StoreError("the store is closed")
        return self._reader

    async def fetchall(self, sql: str, args: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        return await fetch_all(self.reader, sql, tuple(args))

    async def fetchone(self, sql: str, args: Iterable[Any] = ()) -> aiosqlite.Row | None:
        """The first row of a one-row query; see `fetch_one`."""
        return await fetch_one(self.reader, sql, tuple(args))

    async def scalar(self, sql: str, args: Iterable[Any] = ()) -> Any:
        return await self._scalar(self.reader, sql, args)

    async def ping(self) -> None:
        """One round trip to the store: liveness for /healthz."""
        await self._scalar(self.reader, "SELECT 1", ())


async def fetch_all(
    conn: aiosqlite.Connection, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()
) -> list[aiosqlite.Row]:
    # One hop to the connection's thread instead of three (execute, fetch, close): the hops,
    # not SQLite, dominate small reads such as the heartbeat sweep.
    return list(await conn.execute_fetchall(sql, args))


async def fetch_one(
    conn: aiosqlite.Connection, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()
) -> aiosqlite.Row | None:
    """The first row of a one-row query (a key lookup, an aggregate): every row is read in one
    hop, so add LIMIT 1 to queries that could match many."""
    found = await fetch_all(conn, sql, args)
    return found[0] if found else None


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (sqlite3.complete_statement knows the grammar)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
