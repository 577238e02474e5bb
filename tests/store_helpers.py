"""Which engine the suite runs on, and a fresh store for each test.

By default every test gets a new SQLite file. With FLEETBOT_TEST_PG_URL set (a superuser's URL,
its password in PGPASSFILE, as `scripts/pg.sh env` prints them) every test gets a new
PostgreSQL database instead, copied from a template migrated once per worker, and dropped when
the test ends. Tests of one engine's own behaviour (SQLite's file, WAL, PRAGMAs) carry
`@pytest.mark.sqlite_only` or `@pytest.mark.postgres_only`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

PG_URL = os.environ.get("FLEETBOT_TEST_PG_URL") or None
ENGINE = "postgresql" if PG_URL else "sqlite"

T = TypeVar("T")


def storage(tmp_path: Path, name: str = "fleet.db") -> dict[str, Any]:
    """A config's `storage` section for a new, empty store of the suite's engine; the same
    one again for the same path (a test that restarts fleetbot on its database)."""
    path = tmp_path / name
    section: dict[str, Any] = {"path": str(path)}
    if PG_URL:
        section["url"] = _admin().database_for(path)
    return section


def created() -> int:
    """How many databases exist so far: conftest drops those a test creates after this mark
    (a module's fixture made before the test keeps its own until the session ends)."""
    return len(_ADMIN.created) if _ADMIN is not None else 0


def drop_since(mark: int) -> None:
    if _ADMIN is not None:
        _ADMIN.drop(mark)


def close() -> None:
    """At the session's end: drop what is left and close the admin connection."""
    if _ADMIN is not None:
        _ADMIN.drop(0)
        _ADMIN.close()


def database_url(name: str) -> str:
    assert PG_URL is not None
    return urlunsplit(urlsplit(PG_URL)._replace(path=f"/{name}"))


class _Admin:
    """CREATE and DROP DATABASE from synchronous code (config builders) inside a test's running
    event loop: asyncpg runs on a loop of its own, in a thread of its own."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True, name="pg-admin").start()
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self._prefix = f"t_{worker}_{os.getpid()}"
        self._template = f"{self._prefix}_template"
        self._names = itertools.count(1)
        self.created: list[str] = []
        self._by_path: dict[Path, str] = {}
        self._conn: Any = None
        self._run(self._make_template())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    async def _admin_conn(self) -> Any:
        import asyncpg

        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(PG_URL)
        return self._conn

    async def _make_template(self) -> None:
        from core.store.postgres import PostgresDatabase

        conn = await self._admin_conn()
        await conn.execute(f"DROP DATABASE IF EXISTS {self._template} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {self._template}")
        async with PostgresDatabase(database_url(self._template)):
            pass  # migrated: every copy starts at the current schema

    def database_for(self, path: Path) -> str:
        if path not in self._by_path or self._by_path[path] not in self.created:
            name = f"{self._prefix}_{next(self._names)}"
            self._run(self._create(name))
            self.created.append(name)
            self._by_path[path] = name
        return database_url(self._by_path[path])

    async def _create(self, name: str) -> None:
        conn = await self._admin_conn()
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {self._template} STRATEGY file_copy")

    def drop(self, mark: int) -> None:
        names, self.created = self.created[mark:], self.created[:mark]
        if names:
            self._run(self._drop(names))

    def close(self) -> None:
        if self._conn is not None:
            self._run(self._conn.close())
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _drop(self, names: list[str]) -> None:
        conn = await self._admin_conn()
        for name in names:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


_ADMIN: _Admin | None = None


def _admin() -> _Admin:
    global _ADMIN
    if _ADMIN is None:
        _ADMIN = _Admin()
    return _ADMIN
