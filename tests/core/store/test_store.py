"""The SQLite store on real files: pragmas, schema versions, migrations, transactions, ids."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import pytest

from core.errors import SchemaTooNew, StoreError
from core.service import FleetService
from core.store import sqlite as db_module
from core.store.db import Database
from core.store.schema import MIGRATIONS, SCHEMA_VERSION
from core.store.sqlite import SqliteDatabase

TABLES = {"companies", "agents", "issues", "comments", "runs", "heartbeats", "audit", "summaries"}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plain_sqlite(path: Path, user_version: int) -> None:
    """A database written by something else (rollback journal, some data, a given version)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
        conn.execute(f"PRAGMA user_version = {user_version}")
        conn.commit()
    finally:
        conn.close()


async def _tables(db: Database) -> set[str]:
    found = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in found}


async def test_fresh_database_is_wal_with_foreign_keys_and_versioned(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "fresh.db") as db:
        assert str(await db.scalar("PRAGMA journal_mode")).lower() == "wal"
        assert await db.scalar("PRAGMA foreign_keys") == 1
        assert await db.scalar("PRAGMA user_version") == SCHEMA_VERSION == len(MIGRATIONS)
        async with db.write() as conn:
            async with conn.execute("PRAGMA foreign_keys") as cur:
                assert (await cur.fetchone())[0] == 1
            # The pragma is not decoration: a dangling reference is refused.
            with pytest.raises(sqlite3.IntegrityError):
                await conn.execute(
                    "INSERT INTO issues (id, company_id, number, title, status, created_by, "
                    "max_attempts, created_at, updated_at) "
                    "VALUES ('X-1', 'nobody', 1, 't', 'todo', 'me', 3, 0, 0)"
                )
        assert await _tables(db) >= TABLES
    assert (tmp_path / "fresh.db").exists()


async def test_reader_cannot_write(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "ro.db") as db:
        with pytest.raises(sqlite3.OperationalError):
            await db.fetchall(
                "INSERT INTO audit (at, actor, action, result) VALUES (0,'a','b','c')"
            )


async def test_schema_too_new_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    _plain_sqlite(path, SCHEMA_VERSION + 1)
    before = _digest(path)
    db = SqliteDatabase(path)
    with pytest.raises(SchemaTooNew) as err:
        await db.open()
    message = str(err.value)
    assert str(path) in message
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert f"only up to {SCHEMA_VERSION}" in message
    assert "Upgrade fleetbot" in message
    assert isinstance(err.value, StoreError)
    assert _digest(path) == before, "not even the journal mode may change"
    assert not (tmp_path / "future.db-wal").exists()
    with pytest.raises(StoreError, match="closed"):
        db.reader  # noqa: B018  (the failed open left nothing open)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert conn.execute("SELECT body FROM notes").fetchall() == [("keep me",)]
    finally:
        conn.close()


async def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is a shopping list, not a database\n" * 200)
    before = _digest(path)
    with pytest.raises(StoreError) as err:
        await SqliteDatabase(path).open()
    assert not isinstance(err.value, SchemaTooNew)
    assert str(path) in str(err.value)
    assert "not a usable SQLite database" in str(err.value)
    assert _digest(path) == before


async def test_migrations_apply_to_a_version_zero_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _plain_sqlite(path, 0)
    async with SqliteDatabase(path) as db:
        assert await db.scalar("PRAGMA user_version") == SCHEMA_VERSION
        assert TABLES | {"notes"} <= await _tables(db)
        assert await db.scalar("SELECT body FROM notes") == "keep me"
    # Opening again migrates nothing and loses nothing.
    async with SqliteDatabase(path) as db:
        assert await db.scalar("PRAGMA user_version") == SCHEMA_VERSION


async def test_failing_migration_rolls_back_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "half.db"
    async with SqliteDatabase(path):
        pass
    broken = "CREATE TABLE extra (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n"
    monkeypatch.setattr(db_module, "MIGRATIONS", [*MIGRATIONS, broken])
    monkeypatch.setattr(db_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError) as err:
        await SqliteDatabase(path).open()
    assert f"migration {SCHEMA_VERSION + 1} failed" in str(err.value)
    assert f"stays at schema version {SCHEMA_VERSION}" in str(err.value)
    monkeypatch.undo()
    async with SqliteDatabase(path) as db:
        assert await db.scalar("PRAGMA user_version") == SCHEMA_VERSION
        assert "extra" not in await _tables(db), "the half-applied migration was rolled back"


async def test_failed_write_rolls_back_every_step(service: FleetService) -> None:
    db = service.db
    before = await db.scalar("SELECT count(*) FROM audit")
    with pytest.raises(RuntimeError, match="boom"):
        async with db.write() as conn:
            await conn.execute(
                "INSERT INTO companies (id, name, prefix) VALUES ('ghost', 'Ghost', 'GHO')"
            )
            await conn.execute(
                "INSERT INTO audit (at, actor, action, result) VALUES (0, 'me', 'x', 'ok')"
            )
            raise RuntimeError("boom")
    assert await db.scalar("SELECT count(*) FROM companies WHERE id = 'ghost'") == 0
    assert await db.scalar("SELECT count(*) FROM audit") == before
    # The lock and the connection are usable again.
    issue = await service.file_issue(title="after the rollback", assignee="ali-ceo", actor="me")
    assert issue.id == "ALI-1"


async def test_per_company_issue_ids(service: FleetService) -> None:
    first = await service.file_issue(title="one", assignee="ali-cto", actor="owner")
    second = await service.file_issue(title="two", assignee="cto@aliens", actor="owner")
    other = await service.file_issue(title="three", assignee="mat-ceo", actor="owner")
    assert (first.id, second.id, other.id) == ("ALI-1", "ALI-2", "MAT-1")
    assert (first.number, second.number, other.number) == (1, 2, 1)
    assert (await service.issue("ali-2")).title == "two", "ids are read case-insensitively"


async def test_concurrent_writers_never_share_a_number(service: FleetService) -> None:
    issues = await asyncio.gather(
        *(service.file_issue(title=f"t{i}", assignee="ali-cto", actor="o") for i in range(20))
    )
    assert sorted(i.number for i in issues) == list(range(1, 21))


async def test_closed_store_says_so(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "c.db")
    await db.open()
    await db.aclose()
    await db.aclose()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        async with db.write():
            pass
    with pytest.raises(StoreError, match="closed"):
        await db.fetchall("SELECT 1")


async def test_a_write_cancelled_while_begin_waits_leaves_the_writer_usable(tmp_path: Path) -> None:
    """A request cancelled (its client gone) while its BEGIN waited for another process's lock:
    the BEGIN still ran on aiosqlite's thread, and the next write must not find it open."""
    path = tmp_path / "b.db"
    AUDIT = "INSERT INTO audit (at, actor, action, result) VALUES (0, ?, 'x', '')"
    async with SqliteDatabase(path) as db:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock

            async def write() -> None:
                async with db.write() as conn:
                    await conn.execute(AUDIT, ("a",))

            waiting = asyncio.create_task(write())
            await asyncio.sleep(0.2)  # its BEGIN IMMEDIATE is now busy-waiting on the thread
            waiting.cancel()
            await asyncio.sleep(0.1)
            other.execute("ROLLBACK")  # the lock frees: the abandoned BEGIN now succeeds
            with pytest.raises(asyncio.CancelledError):
                await waiting
        finally:
            other.close()
        async with db.write() as conn:
            await conn.execute(AUDIT, ("b",))
        assert await db.scalar("SELECT group_concat(actor) FROM audit") == "b"
