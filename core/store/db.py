"""One SQLite file in WAL mode: a single writer behind a lock, a separate reader.

aiosqlite gives each connection its own thread, so two coroutines sharing one connection would
interleave their statements inside each other's transactions. Writes therefore go through
`write()`, which holds an asyncio lock for the whole `BEGIN IMMEDIATE … COMMIT`; reads use a second
connection and see only committed data.

SQLite's "cannot now" errors (locked by another process, disk full or failing, read-only file)
leave here as `StoreUnavailable`, naming the cause and the fix; any other sqlite3 error is a bug
and leaves as it is.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from core.errors import SchemaTooNew, StoreError, StoreUnavailable
from core.store.schema import MIGRATIONS, REBUILDS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 5000  # how long a statement waits for another process's lock
PROBE_BUSY_TIMEOUT_MS = 500  # the readiness probe's wait: probes time out after about a second
FAILURE_MEMORY = 30.0  # seconds a failed write keeps the store unready, unless a commit succeeds

# SQLite's primary result codes that mean "the store cannot do this now" rather than "this
# statement is wrong": (cause, what the owner can do).
_UNAVAILABLE: dict[int, tuple[str, str]] = {
    sqlite3.SQLITE_BUSY: (
        "the database is locked by another process",
        "find and stop whatever holds its write lock (a second fleetbot, a backup tool, an "
        "open sqlite3 shell)",
    ),
    sqlite3.SQLITE_READONLY: (
        "the database file is read-only",
        "make the database file, its -wal and -shm files and their folder writable by fleetbot",
    ),
    sqlite3.SQLITE_FULL: ("the disk is full", "free disk space where the database lives"),
    sqlite3.SQLITE_IOERR: (
        "the disk failed a read or a write",
        "check the disk and the file system (dmesg, df)",
    ),
    sqlite3.SQLITE_CANTOPEN: (
        "the database file cannot be opened",
        "check that the database's folder exists and is writable",
    ),
}


# What BEGIN IMMEDIATE cannot see coming (it writes nothing), so readiness remembers it.
_ONLY_WRITES_SHOW = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR}


def _primary(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None  # the extended code's low byte


def unavailable(exc: sqlite3.Error) -> StoreUnavailable | None:
    """The StoreUnavailable an sqlite3 error stands for, or None if it is not store trouble."""
    found = _UNAVAILABLE.get(_primary(exc) or 0)
    if found is None:
        return None
    cause, fix = found
    return StoreUnavailable(
        f"the store cannot serve this now: {cause} ({exc}). Nothing was changed; retry in a "
        "few seconds.",
        cause=cause,
        fix=fix,
    )


async def _configure(conn: aiosqlite.Connection) -> None:
    conn.row_factory = aiosqlite.Row
    await conn.execute("PRAGMA foreign_keys = ON")
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
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
        # The last write that failed with store trouble, and when (monotonic); a commit clears it.
        self._failure: tuple[float, StoreUnavailable] | None = None

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
        found = await fetch_all(conn, sql, tuple(args))
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
            rebuild = REBUILDS in MIGRATIONS[number]
            if rebuild:  # a no-op inside a transaction, so before BEGIN
                await self._writer.execute("PRAGMA foreign_keys = OFF")
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(MIGRATIONS[number]):
                    await self._writer.execute(statement)
                if rebuild and await fetch_all(self._writer, "PRAGMA foreign_key_check"):
                    raise sqlite3.IntegrityError("a rebuilt table lost rows others refer to")
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
            finally:
                if rebuild:
                    await self._writer.execute("PRAGMA foreign_keys = ON")

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSION

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction: everything inside commits together or not at all."""
        conn = self._writer
        if conn is None:
            raise _closed()
        async with self._lock:
            await _begin(conn)
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException as exc:
                # SQLite itself rolls back on a full disk, an I/O error or a busy COMMIT; a
                # second ROLLBACK would fail and hide why.
                if conn.in_transaction:
                    try:
                        await conn.execute("ROLLBACK")
                    except sqlite3.OperationalError:
                        # Cancelled while the COMMIT was still running on the connection's
                        # thread (a shutdown): it finished the transaction first. Anything
                        # else is real.
                        if conn.in_transaction:
                            raise
                self._remember(exc)
                if isinstance(exc, sqlite3.Error) and (trouble := unavailable(exc)):
                    raise trouble from exc
                raise
            self._failure = None

    def _remember(self, exc: BaseException) -> None:
        """Keep a failure that only a write shows (a full or failing disk) for readiness."""
        cause = exc.__cause__ if isinstance(exc, StoreUnavailable) else exc
        if isinstance(cause, sqlite3.Error) and _primary(cause) in _ONLY_WRITES_SHOW:
            trouble = unavailable(cause)
            assert trouble is not None
            self._failure = (time.monotonic(), trouble)

    async def probe_write(self) -> None:
        """StoreUnavailable unless writes work: a write transaction can start now (waiting at
        most half a second for another process's lock), and the last write did not fail on a
        full or failing disk in the last FAILURE_MEMORY seconds. Readiness for /readyz."""
        conn = self._writer
        if conn is None:
            raise _closed()
        async with self._lock:
            await conn.execute(f"PRAGMA busy_timeout = {PROBE_BUSY_TIMEOUT_MS}")
            try:
                await _begin(conn)
                await conn.execute("ROLLBACK")
            finally:
                await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if self._failure is not None:
            when, trouble = self._failure
            if time.monotonic() - when < FAILURE_MEMORY:
                raise StoreUnavailable(trouble.message, cause=trouble.cause, fix=trouble.fix)
            self._failure = None

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise _closed()
        return self._reader

    async def fetchall(self, sql: str, args: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        return await fetch_all(self.reader, sql, tuple(args))

    async def fetchone(self, sql: str, args: Iterable[Any] = ()) -> aiosqlite.Row | None:
        """The first row of a one-row query; see `fetch_one`."""
        return await fetch_one(self.reader, sql, tuple(args))

    async def scalar(self, sql: str, args: Iterable[Any] = ()) -> Any:
        return await self._scalar(self.reader, sql, args)


async def fetch_all(
    conn: aiosqlite.Connection, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()
) -> list[aiosqlite.Row]:
    # One hop to the connection's thread instead of three (execute, fetch, close): the hops,
    # not SQLite, dominate small reads such as the heartbeat sweep.
    try:
        return list(await conn.execute_fetchall(sql, args))
    except sqlite3.Error as exc:
        # Read-only here is a write sent to the (query-only) reader, a bug; a read-only file
        # shows in `write()`, which translates what reaches it from inside the transaction.
        if _primary(exc) != sqlite3.SQLITE_READONLY and (trouble := unavailable(exc)):
            raise trouble from exc
        raise


async def _begin(conn: aiosqlite.Connection) -> None:
    try:
        await conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        if trouble := unavailable(exc):
            raise trouble from exc
        raise


def _closed() -> StoreUnavailable:
    return StoreUnavailable(
        "the store is closed (fleetbot is stopping or starting); retry in a few seconds.",
        cause="the store is closed",
        fix="wait for fleetbot to finish starting, or start it again",
    )


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
