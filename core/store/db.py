"""The store's connections, on one of two engines (core.store.engines picks it).

One SQLite file (core.store.sqlite), the embedded default, or a PostgreSQL database
(core.store.postgres). Both give the rest of
fleetbot the same four things: `write()`, one transaction on the one writer, serialised with
every other writer of the database; `reader`, which sees only committed data; `probe_write()`
for readiness; and `StoreUnavailable` for "the store cannot do this now", naming the cause and
the fix. Statements are written once, in the SQL both engines speak, with `?` placeholders.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from core.errors import StoreUnavailable
from core.store.conn import Args, Conn, Row
from core.store.schema import SCHEMA_VERSION
from core.store.sqlite_errors import primary, unavailable


class Database(ABC):
    """The store on one engine; core.store.engines opens the one a target or config names.
    Use as `async with database(target) as db:` or `await open()`."""

    engine: str
    # Whether other processes may use this database beside this one (replicas of `fleetbot
    # run` on PostgreSQL); False when this one holds it alone (`fleetbot run` on SQLite, whose
    # lock file proves every earlier holder dead: core.cluster takes their lease at once).
    shared = True

    @property
    @abstractmethod
    def where(self) -> str:
        """The database for messages: a path, or the URL without credentials."""

    @abstractmethod
    async def open(self) -> Database: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    @abstractmethod
    def write(self) -> AbstractAsyncContextManager[Conn]:
        """One transaction: everything inside commits together or not at all."""

    @abstractmethod
    async def probe_write(self) -> None:
        """StoreUnavailable unless a write could start now: readiness for /readyz."""

    @property
    @abstractmethod
    def reader(self) -> Conn: ...

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSION

    async def fetchall(self, sql: str, args: Iterable[Any] = ()) -> list[Row]:
        return await fetch_all(self.reader, sql, tuple(args))

    async def fetchone(self, sql: str, args: Iterable[Any] = ()) -> Row | None:
        """The first row of a one-row query; see `fetch_one`."""
        return await fetch_one(self.reader, sql, tuple(args))

    async def scalar(self, sql: str, args: Iterable[Any] = ()) -> Any:
        found = await fetch_all(self.reader, sql, tuple(args))
        return found[0][0] if found else None


async def fetch_all(conn: Conn, sql: str, args: Args = ()) -> list[Row]:
    # One hop to the connection's thread instead of three (execute, fetch, close): the hops,
    # not SQLite, dominate small reads such as the heartbeat sweep.
    try:
        return list(await conn.execute_fetchall(sql, args))
    except sqlite3.Error as exc:
        # Read-only here is a write sent to the (query-only) reader, a bug; a read-only file
        # shows in `write()`, which translates what reaches it from inside the transaction.
        if primary(exc) != sqlite3.SQLITE_READONLY and (trouble := unavailable(exc)):
            raise trouble from exc
        raise


async def fetch_one(conn: Conn, sql: str, args: Args = ()) -> Row | None:
    """The first row of a one-row query (a key lookup, an aggregate): every row is read in one
    hop, so add LIMIT 1 to queries that could match many."""
    found = await fetch_all(conn, sql, args)
    return found[0] if found else None


async def inserted_id(conn: Conn, sql: str, args: Args = ()) -> int:
    """The id an `INSERT … RETURNING id` wrote (both engines; a cursor's lastrowid is SQLite's)."""
    found = await fetch_one(conn, sql, args)
    assert found is not None, "an INSERT … RETURNING id that returned nothing"
    return int(found[0])


def closed() -> StoreUnavailable:
    return StoreUnavailable(
        "the store is closed (fleetbot is stopping or starting); retry in a few seconds.",
        cause="the store is closed",
        fix="wait for fleetbot to finish starting, or start it again",
    )
