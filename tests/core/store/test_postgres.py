"""The PostgreSQL engine's own behaviour, against a real server (FLEETBOT_TEST_PG_URL).

Migrations under the advisory lock, refusals that say what to do (a newer schema, a foreign
database, a wrong password, a missing database, no server), writes serialised across
processes, the read-only reader, a server that drops sessions, readiness while another session
holds the write lock, replicas sharing a database that `fleetbot migrate` holds alone, NUL in
text, rowcounts and
RETURNING, and the API's 503 when the store cannot serve. Everything the rest of the suite runs
on both engines is left to it; SQLite's own trouble is in tests/core/api/test_hostile_clients.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import store_helpers
from api_helpers import api_stack

from core.errors import InstanceLocked, SchemaTooNew, StoreError, StoreUnavailable
from core.store import postgres
from core.store.db import Database, fetch_one, inserted_id
from core.store.postgres import WRITE_LOCK, PostgresDatabase
from core.store.schema import SCHEMA_VERSION

pytestmark = pytest.mark.postgres_only


def name_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    """A superuser session on the server's own database, outside any test's database."""
    conn = await asyncpg.connect(store_helpers.PG_URL)
    yield conn
    await conn.close()


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A new database, already at the current schema (a copy of the suite's template)."""
    return str(store_helpers.storage(tmp_path, "pg")["url"])


@pytest.fixture
async def empty_url(admin: asyncpg.Connection) -> AsyncIterator[str]:
    """A new database with nothing in it: what an owner's `createdb` gives fleetbot."""
    name = f"h2_{uuid.uuid4().hex[:12]}"
    await admin.execute(f"CREATE DATABASE {name}")
    yield store_helpers.database_url(name)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def db(url: str) -> AsyncIterator[PostgresDatabase]:
    database = await PostgresDatabase(url).open()
    yield database
    await database.aclose()


async def session(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url)


async def sessions(admin: asyncpg.Connection, url: str, app: str | None = None) -> list[int]:
    """The server pids of fleetbot's sessions on one database (not the test's own)."""
    found = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() "
        "AND ($2::text IS NULL OR application_name = $2) ORDER BY pid",
        name_of(url),
        app,
    )
    return [r[0] for r in found]


async def terminate(admin: asyncpg.Connection, *pids: int) -> None:
    for pid in pids:  # the timeout form waits until the session is gone
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)


async def fingerprint(url: str) -> tuple[Any, ...]:
    """What a refused open must not change: the tables, their columns, the version, the rows."""
    conn = await session(url)
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2"
        )
        version = None
        if await conn.fetchval("SELECT to_regclass('fleetbot_schema') IS NOT NULL"):
            version = [r[0] for r in await conn.fetch("SELECT version FROM fleetbot_schema")]
        rows = await conn.fetch("SELECT id, name FROM companies ORDER BY id")
        return (tuple(map(tuple, columns)), version, tuple(map(tuple, rows)))
    finally:
        await conn.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def add_company(db: Database, company: str = "c1") -> None:
    async with db.write() as conn:
        await conn.execute(
            "INSERT INTO companies (id, name, prefix) VALUES (?, ?, ?)",
            (company, company, company.upper()),
        )


# -- migrations ----------------------------------------------------------------------------------


async def test_a_new_database_is_migrated_and_opening_again_changes_nothing(
    empty_url: str,
) -> None:
    async with PostgresDatabase(empty_url) as db:
        assert await db.scalar("SELECT version FROM fleetbot_schema") == SCHEMA_VERSION
        assert await db.scalar("SELECT count(*) FROM fleetbot_schema") == 1
        assert await db.open() is db  # already open: the same store, not a second writer
        await add_company(db)
    before = await fingerprint(empty_url)
    assert before[1] == [SCHEMA_VERSION] and len(before[0]) > 200
    for _ in range(2):
        async with PostgresDatabase(empty_url) as db:
            assert await db.scalar("SELECT name FROM companies") == "c1"
    assert await fingerprint(empty_url) == before


async def test_processes_opening_a_new_database_at_once_migrate_it_once(
    empty_url: str, admin: asyncpg.Connection
) -> None:
    dbs = [PostgresDatabase(empty_url) for _ in range(4)]
    try:
        # Without the migration lock three of them would find no tables and run the baseline
        # again: "relation already exists", a StoreError.
        await asyncio.gather(*(db.open() for db in dbs))
        for db in dbs:
            assert await db.scalar("SELECT version FROM fleetbot_schema") == SCHEMA_VERSION
        assert await dbs[0].scalar("SELECT count(*) FROM fleetbot_schema") == 1
        await add_company(dbs[3])
        assert await dbs[0].scalar("SELECT count(*) FROM companies") == 1
    finally:
        for db in dbs:
            await db.aclose()


async def test_a_newer_schema_is_refused_and_left_untouched(
    url: str, admin: asyncpg.Connection
) -> None:
    async with PostgresDatabase(url) as db:
        await add_company(db)
    conn = await session(url)
    await conn.execute("UPDATE fleetbot_schema SET version = $1", SCHEMA_VERSION + 1)
    await conn.close()
    before = await fingerprint(url)
    with pytest.raises(SchemaTooNew) as refused:
        await PostgresDatabase(url).open()
    assert f"schema version {SCHEMA_VERSION + 1}" in refused.value.message
    assert f"only up to {SCHEMA_VERSION}" in refused.value.message
    assert "Upgrade fleetbot" in refused.value.message
    assert await fingerprint(url) == before
    assert await sessions(admin, url) == []  # the refused open closed what it had opened


async def test_fleetbot_tables_without_a_version_are_refused(url: str) -> None:
    conn = await session(url)
    await conn.execute("DROP TABLE fleetbot_schema")
    await conn.close()
    before = await fingerprint(url)
    with pytest.raises(StoreError) as refused:
        await PostgresDatabase(url).open()
    assert not isinstance(refused.value, StoreUnavailable | SchemaTooNew)
    assert "fleetbot_schema" in refused.value.message and "empty database" in refused.value.message
    assert await fingerprint(url) == before  # no baseline over the old tables


# -- refusals to connect -------------------------------------------------------------------------


async def test_a_wrong_password_says_where_to_set_it_and_not_what_it_was(url: str) -> None:
    secret = "h2-Not-The-Pa55word"
    parts = urlsplit(url)
    netloc = f"{parts.username}:{secret}@{parts.hostname}:{parts.port}"
    in_url = urlunsplit(parts._replace(netloc=netloc))
    for db in (PostgresDatabase(url, password=secret), PostgresDatabase(in_url)):
        with pytest.raises(StoreError) as refused:
            await db.open()
        message = refused.value.message
        assert not isinstance(refused.value, StoreUnavailable)  # retrying will not help
        assert "refused the login" in message and "storage.password names" in message
        assert name_of(url) in message
        assert secret not in message and secret not in db.where
        assert secret not in str(refused.value.__cause__)


async def test_a_missing_database_says_to_create_it(url: str) -> None:
    missing = store_helpers.database_url(f"h2_missing_{uuid.uuid4().hex[:8]}")
    with pytest.raises(StoreError) as refused:
        await PostgresDatabase(missing).open()
    assert not isinstance(refused.value, StoreUnavailable)
    assert "createdb" in refused.value.message and name_of(missing) in refused.value.message


async def test_no_server_is_store_unavailable_at_once() -> None:
    parts = urlsplit(store_helpers.database_url("fleetbot"))
    nowhere = urlunsplit(parts._replace(netloc=f"fleetbot@127.0.0.1:{closed_port()}"))
    start = time.monotonic()
    for exclusive in (False, True):
        with pytest.raises(StoreUnavailable) as refused:
            await PostgresDatabase(nowhere, exclusive=exclusive).open()
        assert refused.value.code == "store_unavailable"  # the API's 503
        assert refused.value.cause == "PostgreSQL cannot be reached"
        assert "storage.url" in refused.value.fix and "retry" in refused.value.message
    assert time.monotonic() - start < 3


# -- writes, the reader and a server that drops sessions -----------------------------------------


async def test_writes_from_two_processes_are_serialised(url: str) -> None:
    """Read-modify-write increments from two stores (two processes' writers) lose nothing."""
    n = 40
    async with PostgresDatabase(url) as one, PostgresDatabase(url) as two:
        async with one.write() as conn:
            await conn.execute("INSERT INTO queue_watch (company_id) VALUES ('c')")

        async def bump(db: Database) -> None:
            async with db.write() as conn:
                found = await fetch_one(
                    conn, "SELECT empty_beats FROM queue_watch WHERE company_id = 'c'"
                )
                assert found is not None
                await asyncio.sleep(0.001)  # the other store's chance to read the same value
                await conn.execute(
                    "UPDATE queue_watch SET empty_beats = ? WHERE company_id = 'c'",
                    (found[0] + 1,),
                )

        await asyncio.gather(*(bump(db) for _ in range(n) for db in (one, two)))
        assert await two.scalar("SELECT empty_beats FROM queue_watch") == 2 * n


async def test_a_write_through_the_reader_is_a_bug_not_unavailable(
    db: PostgresDatabase,
) -> None:
    sql = "INSERT INTO queue_watch (company_id) VALUES (?)"
    for attempt in (
        lambda: db.reader.execute(sql, ("c",)),
        lambda: db.reader.execute_fetchall(sql + " RETURNING company_id", ("c",)),
        lambda: db.fetchall(sql + " RETURNING company_id", ("c",)),
    ):
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await attempt()
    assert await db.scalar("SELECT count(*) FROM queue_watch") == 0
    await db.probe_write()  # the store itself is fine


async def writer_pid(db: PostgresDatabase) -> int:
    async with db.write() as conn:
        found = await fetch_one(conn, "SELECT pg_backend_pid()")
    assert found is not None
    return int(found[0])


async def test_a_writer_dropped_mid_write_fails_that_write_and_reconnects(
    db: PostgresDatabase, admin: asyncpg.Connection
) -> None:
    with pytest.raises(StoreUnavailable) as failed:
        async with db.write() as conn:
            await conn.execute("INSERT INTO queue_watch (company_id) VALUES ('half')")
            found = await fetch_one(conn, "SELECT pg_backend_pid()")
            assert found is not None
            await terminate(admin, found[0])
            await conn.execute("INSERT INTO queue_watch (company_id) VALUES ('second')")
    assert "retry" in failed.value.message
    async with db.write() as conn:  # a new connection
        await conn.execute("INSERT INTO queue_watch (company_id) VALUES ('after')")
    assert [tuple(r) for r in await db.fetchall("SELECT company_id FROM queue_watch")] == [
        ("after",)
    ]
    await db.probe_write()


async def test_a_writer_dropped_between_writes_costs_at_most_one(
    db: PostgresDatabase, admin: asyncpg.Connection
) -> None:
    for n in range(3):
        await terminate(admin, await writer_pid(db))
        try:
            async with db.write() as conn:
                await conn.execute("INSERT INTO queue_watch (company_id) VALUES (?)", (f"a{n}",))
        except StoreUnavailable:
            pass  # the one write that found the connection dead
        async with db.write() as conn:
            await conn.execute("INSERT INTO queue_watch (company_id) VALUES (?)", (f"b{n}",))
        assert f"b{n}" in [r[0] for r in await db.fetchall("SELECT company_id FROM queue_watch")]


async def test_readers_dropped_by_the_server_recover_on_the_next_read(
    db: PostgresDatabase, admin: asyncpg.Connection
) -> None:
    await add_company(db)
    await asyncio.gather(*(db.fetchall("SELECT pg_sleep(0.05)") for _ in range(3)))  # 3 readers
    writer = await writer_pid(db)
    readers = [pid for pid in await sessions(admin, db.url) if pid != writer]
    assert len(readers) >= 2, readers
    await terminate(admin, *readers)
    with contextlib.suppress(StoreUnavailable):  # a session the pool did not yet know was gone
        await db.fetchall("SELECT id FROM companies")
    for _ in range(5):
        assert await db.scalar("SELECT id FROM companies") == "c1"
    assert writer in await sessions(admin, db.url)  # the writer was not touched


# -- readiness and the write lock ----------------------------------------------------------------


async def test_probe_write_fails_fast_while_another_session_holds_the_write_lock(
    db: PostgresDatabase,
) -> None:
    await db.probe_write()
    other = await session(db.url)
    try:
        await other.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        start = time.monotonic()
        with pytest.raises(StoreUnavailable) as unready:
            await db.probe_write()
        assert time.monotonic() - start < 1.2
        assert unready.value.cause == "a lock is held by another session"
        assert "pg_stat_activity" in unready.value.fix
        await other.execute("ROLLBACK")
        await db.probe_write()
        await add_company(db)  # the failed probe left the writer fit for work
    finally:
        await other.close()


async def test_a_write_waits_for_another_process_as_long_as_sqlite_does_then_is_unavailable(
    db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "WRITE_WAIT_MS", 200)  # 5 s in production, as busy_timeout
    other = await session(db.url)
    try:
        await other.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        start = time.monotonic()
        with pytest.raises(StoreUnavailable) as busy:
            await add_company(db)
        assert 0.15 < time.monotonic() - start < 2.0
        assert busy.value.cause == "a lock is held by another session"
        await other.execute("ROLLBACK")
        await add_company(db)  # the writer is fit for work again
    finally:
        await other.close()


async def write_lock_is_free(url: str, within: float = 2.0) -> bool:
    """Whether another session can take the write lock (soon: a dropped session's server process
    lets go of what it held when it notices it is gone)."""
    conn = await session(url)
    try:
        deadline = time.monotonic() + within
        while not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", WRITE_LOCK):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True
    finally:
        await conn.close()


async def test_a_write_cancelled_while_waiting_for_the_lock_leaves_the_writer_usable(
    db: PostgresDatabase,
) -> None:
    """A request given up on, or a shutdown, while another process holds the write lock: the
    writer must neither stay in an aborted transaction (every later write failing) nor take the
    lock once it is free and keep it for no one (every other process's writes waiting)."""
    other = await session(db.url)
    try:
        await other.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        waiting = asyncio.create_task(add_company(db, "early"))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0.1)  # asyncpg's cancel request reaches the server
        await other.execute("ROLLBACK")
    finally:
        await other.close()
    assert await write_lock_is_free(db.url)
    await asyncio.wait_for(add_company(db, "later"), 5)
    assert [r[0] for r in await db.fetchall("SELECT id FROM companies")] == ["later"]
    await db.probe_write()


async def test_a_write_cancelled_inside_its_transaction_is_rolled_back(
    db: PostgresDatabase,
) -> None:
    async def slow() -> None:
        async with db.write() as conn:
            await conn.execute("INSERT INTO queue_watch (company_id) VALUES ('half')")
            await conn.execute("SELECT pg_sleep(5)")

    waiting = asyncio.create_task(slow())
    await asyncio.sleep(0.2)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await write_lock_is_free(db.url, within=0.5)
    await asyncio.wait_for(add_company(db), 5)
    assert await db.fetchall("SELECT company_id FROM queue_watch") == []


# -- replicas share a database; `fleetbot migrate` holds it alone ----------------------------------


async def test_replicas_share_a_database_that_an_exclusive_holder_is_refused(
    tmp_path: Path, admin: asyncpg.Connection
) -> None:
    url = store_helpers.storage(tmp_path, "a")["url"]
    elsewhere = store_helpers.storage(tmp_path, "b")["url"]  # the same server, another database
    async with (
        PostgresDatabase(url, replica=True),
        PostgresDatabase(url, replica=True),
        PostgresDatabase(elsewhere, exclusive=True),
    ):
        holders = await sessions(admin, url, "fleetbot run")
        (other,) = await sessions(admin, elsewhere, "fleetbot (exclusive)")
        assert len(holders) == 2
        with pytest.raises(InstanceLocked) as refused:
            await PostgresDatabase(url, exclusive=True).open()
        message = refused.value.message
        assert all(f"pid {h}" in message for h in holders) and f"pid {other}" not in message
        assert "stop every replica" in message and name_of(url) in message
        assert await sessions(admin, url, "fleetbot (exclusive)") == []  # nothing left behind
        with pytest.raises(InstanceLocked, match="fleetbot migrate"):
            await PostgresDatabase(elsewhere, replica=True).open()
        async with PostgresDatabase(url) as alongside:  # `fleetbot` commands that are not run
            await add_company(alongside)
    async with PostgresDatabase(url, exclusive=True) as alone:
        assert await alone.scalar("SELECT id FROM companies") == "c1"


# -- what statements get back --------------------------------------------------------------------


async def test_nul_in_text_is_stored_as_a_replacement_character(db: PostgresDatabase) -> None:
    await add_company(db, "c1")
    async with db.write() as conn:
        await conn.execute(
            "INSERT INTO audit (at, actor, action, detail, result) VALUES (?, ?, ?, ?, ?)",
            (1.0, "owner", "issue.create", "a\x00b\x00", "ok"),
        )
        await conn.execute(
            "UPDATE companies SET name = :name WHERE id = :id", {"name": "n\x00", "id": "c1"}
        )
        assert await fetch_one(conn, "SELECT id FROM companies WHERE id = ?", ("c1\x00",)) is None
    assert await db.scalar("SELECT detail FROM audit") == "a\ufffdb\ufffd"
    assert await db.scalar("SELECT name FROM companies") == "n\ufffd"
    assert await db.fetchall("SELECT id FROM companies WHERE id = ?", ("c1\x00",)) == []
    found = await db.reader.execute_fetchall(
        "SELECT id FROM companies WHERE id = :id", {"id": "\x00"}
    )
    assert list(found) == []


async def test_rowcounts_and_returning(db: PostgresDatabase) -> None:
    async with db.write() as conn:
        for company in ("a", "b", "c"):
            cursor = await conn.execute(
                "INSERT INTO queue_watch (company_id) VALUES (?)", (company,)
            )
            assert cursor.rowcount == 1
        cursor = await conn.execute(
            "INSERT INTO recipients (chat) SELECT company_id FROM queue_watch"
        )
        assert cursor.rowcount == 3
        cursor = await conn.execute("UPDATE queue_watch SET empty_beats = empty_beats + 1")
        assert cursor.rowcount == 3
        cursor = await conn.execute("UPDATE queue_watch SET empty_beats = 0 WHERE company_id = 'x'")
        assert cursor.rowcount == 0
        cursor = await conn.execute("DELETE FROM queue_watch WHERE company_id IN ('a', 'b')")
        assert cursor.rowcount == 2
        cursor = await conn.execute(
            "INSERT INTO queue_watch (company_id) VALUES ('c') ON CONFLICT DO NOTHING"
        )
        assert cursor.rowcount == 0

        audit = (
            "INSERT INTO audit (at, actor, action, result) VALUES (?, 'owner', ?, 'ok') "
            "RETURNING id"
        )
        first = await inserted_id(conn, audit, (1.0, "one"))
        second = await inserted_id(conn, audit, (2.0, "two"))
        assert isinstance(first, int) and second == first + 1
        key = (
            "INSERT INTO outbox (kind, chat, dedupe_key, state, created_at, due_at) "
            "VALUES ('text', 'chat', ?, 'pending', 0, 0) ON CONFLICT DO NOTHING RETURNING id"
        )
        assert await fetch_one(conn, key, ("k",)) is not None
        assert await fetch_one(conn, key, ("k",)) is None  # the conflict: no row, no error
    assert await db.scalar("SELECT count(*) FROM outbox") == 1


# -- the API -------------------------------------------------------------------------------------


async def test_the_api_answers_503_while_the_store_cannot_write_and_recovers(
    tmp_path: Path, admin: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """Another session holds the write lock: readiness says so within a second; a write waiting
    for the lock whose session the server then ends is a 503, not a 500; then all is well."""
    async with api_stack(tmp_path) as api:
        h = api.headers("ripley")
        issue = {"title": "t", "assignee": "bishop"}
        assert api.config.storage.url is not None
        other = await session(api.config.storage.url)
        try:
            await other.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
            with caplog.at_level(logging.WARNING):
                start = time.monotonic()
                r = await api.client.get("/readyz")
                assert time.monotonic() - start < 1.5
                assert r.status_code == 503 and r.json()["error"] == "store_unavailable", r.text
                assert "lock is held by another session" in r.json()["detail"]
                assert (await api.client.get("/healthz")).status_code == 200

                request = asyncio.create_task(
                    api.client.post("/api/v1/issues", headers=h, json=issue)
                )
                waiting: list[int] = []
                for _ in range(100):
                    waiting = [
                        r[0]
                        for r in await admin.fetch(
                            "SELECT pid FROM pg_stat_activity WHERE datname = $1 "
                            "AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
                            name_of(api.db.where),
                        )
                    ]
                    if waiting:
                        break
                    await asyncio.sleep(0.02)
                assert len(waiting) == 1, "the API's write never waited for the lock"
                await terminate(admin, *waiting)
                r = await request
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "5"
                assert r.json()["error"] == "store_unavailable" and "retry" in r.json()["detail"]
            bad = [x for x in caplog.records if x.levelno >= logging.ERROR or x.exc_info]
            assert bad == [], [x.getMessage() for x in bad]
            await other.execute("ROLLBACK")
        finally:
            await other.close()
        assert (await api.client.get("/readyz")).status_code == 200
        r = await api.client.post("/api/v1/issues", headers=h, json=issue)
        assert r.status_code == 201, r.text
        assert [i.title for i in await api.service.inbox("bishop")] == ["t"]  # one, not two
