"""What a store statement runs on, whichever engine holds the data.

Every statement module takes a `Conn`: the writer inside `Database.write()` or the reader. An
aiosqlite connection is one as it is (SQLite pays nothing for the second engine); the
PostgreSQL store wraps its asyncpg connections in one (core.store.postgres). Rows are
sqlite3.Row or asyncpg.Record: both index by position and by column name, and `dict(row)`
works on both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

Args = Sequence[Any] | Mapping[str, Any]


class Row(Protocol):
    def __getitem__(self, key: int | str, /) -> Any: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def keys(self) -> Iterable[str]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int:
        """The rows an INSERT, UPDATE or DELETE touched."""
        ...


class Conn(Protocol):
    """Statements in SQLite's placeholder style (`?` or `:name`), which the PostgreSQL store
    rewrites; write ids back with `RETURNING id`, not a cursor's lastrowid."""

    # Not `async def`: aiosqlite's methods return an awaitable Result, not a coroutine.
    def execute(self, sql: str, parameters: Args = ..., /) -> Awaitable[Cursor]: ...

    def execute_fetchall(self, sql: str, parameters: Args = ..., /) -> Awaitable[Iterable[Row]]: ...
