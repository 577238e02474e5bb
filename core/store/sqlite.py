"""The embedded engine: one SQLite file in WAL mode, a single writer behind a lock, a reader.

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
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from core.errors import SchemaTooNew, StoreError, StoreUnavailable
from core.store.db import Database, closed, fetch_all
from core.store.instance import InstanceLock
from core.store.lease import check_fence
from core.store.schema import MIGRATIONS, REBUILDS, SCHEMA_VERSION
from core.store.sqlite_errors import ONLY_WRITES_SHOW, primary, unavailable

BUSY_TIMEOUT_MS = 5000  # how long a statement waits for another process's lock
PROBE_BUSY_TIMEOUT_MS = 500  # the readiness probe's wait: probes time out after about a second
FAILURE_MEMORY = 30.0  # seconds a failed write keeps the store unready, unless a commit succeeds


def _least(*args: Any) -> Any:
    present = [a for a in args if a is not None]
    return min(present) if present else None


def _greatest(*args: Any) -> Any:
    present = [a for a in args if a is not None]
    return max(present) if present else None


async def _configure(conn: aiosqlite.Connection) -> None:
    conn.row_factory = aiosqlite.Row
    # PostgreSQL's LEAST and GREATEST (which skip NULLs), so statements say them once for both
    # engines; SQLite's own two-argument MIN/MAX would return NULL for any NULL argument.
    await conn.create_function("least", -1, _least, deterministic=True)
    await conn.create_function("greatest", -1, _greatest, deterministic=True)
    await conn.execute("PRAGMA foreign_keys = ON")
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # NORMAL is durable across process crashes in WAL mode; only an OS crash can lose the
    # last transactions, and it never corrupts the file.
    await conn.execute("PRAGMA synchronous = NORMAL")


class SqliteDatabase(Database):
    """One SQLite file: a writer behind an asyncio lock and a query-only reader."""

    engine = "sqlite"

    def __init__(self, path: Path | str, *, exclusive: bool = False) -> None:
        self.path = Path(path)
        # Taken before the file is opened at all: a second `fleetbot run` must not touch it.
        self._instance = InstanceLock(self.path) if exclusive else None
        self.shared = not exclusive
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        # The last write that failed with store trouble, and when (monotonic); a commit clears it.
        self._failure: tuple[float, StoreUnavailable] | None = None

    @property
    def where(self) -> str:
        return str(self.path)

    async def open(self) -> SqliteDatabase:
        if self._writer is not None:
            return self
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._instance is not None:
            self._instance.acquire()
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
        if self._instance is not None:
            self._instance.release()

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

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction: everything inside commits together or not at all."""
        conn = self._writer
        if conn is None:
            raise closed()
        async with self._lock:
            await _begin(conn)
            try:
                await check_fence(conn, self.engine)
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
        if isinstance(cause, sqlite3.Error) and primary(cause) in ONLY_WRITES_SHOW:
            trouble = unavailable(cause)
            assert trouble is not None
            self._failure = (time.monotonic(), trouble)

    async def probe_write(self) -> None:
        """StoreUnavailable unless writes work: a write transaction can start now (waiting at
        most half a second for another process's lock), and the last write did not fail on a
        full or failing disk in the last FAILURE_MEMORY seconds. Readiness for /readyz."""
        conn = self._writer
        if conn is None:
            raise closed()
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
            raise closed()
        return self._reader


async def _begin(conn: aiosqlite.Connection) -> None:
    try:
        await conn.execute("BEGIN IMMEDIATE")
    except asyncio.CancelledError:
        # The BEGIN runs on the connection's thread whether or not anyone still waits for it
        # (here, for another process's lock). Left open, the next writer's BEGIN fails with
        # "cannot start a transaction within a transaction". aiosqlite runs statements in order,
        # so this ROLLBACK ends it before any later BEGIN, even if we are cancelled again.
        with contextlib.suppress(sqlite3.OperationalError):  # the BEGIN failed: none to end
            await conn.execute("ROLLBACK")
        raise
    except sqlite3.Error as exc:
        if trouble := unavailable(exc):
            raise trouble from exc
        raise


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
