"""`fleetbot migrate`'s copy (core.store.copy): a SQLite store with a bit of everything in it,
copied into PostgreSQL, comes out row for row with the same ids; new rows get new ids; a
non-empty target, another schema version or a row PostgreSQL cannot hold stops it before
anything is copied."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import store_helpers
from stack_helpers import config_data, open_stack

from core.alerting.book import AlertBook, AlertKind, Finding
from core.alerting.outbox import Outbox
from core.clock import ManualClock
from core.config import Config, parse_config
from core.errors import StoreError
from core.models import RunOutcome
from core.service import FleetService
from core.store import copy, heartbeats
from core.store.db import Database
from core.store.postgres import PostgresDatabase
from core.store.sqlite import SqliteDatabase

STANDUP = {"name": "standup", "schedule": "daily 09:00", "assignee": "ceo", "title": "Standup"}
# What no service call in this test writes, by hand, so that every table has rows to compare.
BY_HAND = {
    "recipients": "INSERT INTO recipients VALUES ('-1003', '-1004', 1767225600, 'moved')",
    "auto_resets": "INSERT INTO auto_resets VALUES ('ali-qa-1', 2, 1767229200.5, NULL)",
    "recovery_loops": "INSERT INTO recovery_loops VALUES ('ALI-1', 3, 3600, 1767225600)",
    "escalations": "INSERT INTO escalations VALUES ('ALI-1', '[\"ali-cto\"]', 'ali-ceo', "
    "NULL, 1767225600)",
    "budget_actions": "INSERT INTO budget_actions VALUES ('aliens', '2026-01', 'warn', 1.25)",
    "breaker_trips": "INSERT INTO breaker_trips VALUES ('ali-cto', 1767225600, 4.5, 9000, 0.5, 1)",
}


def source_config(tmp_path: Path) -> Config:
    """The base config, its store a SQLite file whichever engine the suite runs on."""
    data = config_data(tmp_path)
    data["storage"] = {"path": str(tmp_path / "source.db")}
    data["telegram"] = {"owners": [1001]}
    data["companies"][0].update(chat=-1001, routines=[STANDUP])
    data["alerts"] = {"group_wait": "30s"}
    return parse_config(data, "copy test config")


async def fill(config: Config, clock: ManualClock) -> None:
    """Issues, comments, runs, summaries, questions, routines, alerts, the outbox, links,
    heartbeats and audit rows, written as fleetbot writes them."""
    async with open_stack(config.storage.path.parent, clock, config=config) as s:
        assert isinstance(s.db, SqliteDatabase)
        service = s.service
        first = await service.file_issue(
            title="Ship it", assignee="ali-cto", actor="alice", body="naïve – 🚀\nline two"
        )
        await service.file_issue(title="Later", assignee="ali-ceo", actor="alice", backlog=True)
        await s.scheduler.drain()
        [run] = await service.recent_runs("ali-cto")
        await service.report_usage(
            run.id, "ali-cto", turns=2, input_tokens=1200, output_tokens=300, cost=0.0125
        )
        await service.comment(first.id, "looks good", "alice")
        await service.finish_run(run.id, "ali-cto", RunOutcome.DONE, "shipped")
        clock.advance(60)
        second = await service.file_issue(title="Which one?", assignee="mat-cto", actor="bob")
        agent = await service.agent("mat-cto")
        question = await service.ask(agent, second.id, "Red or blue?", choices=["red", "blue"])
        await service.answer(question.id, "bob", choice=1)
        await service.ask(agent, second.id, "Ship today?", approval=True)
        await service.post_summary(agent, "half done", second.id)
        await service.run_routine("standup", "alice")
        await service.add_routine(
            name="gone", schedule="daily 10:00", assignee="ali-ceo", title="Gone", actor="alice"
        )
        await service.remove_routine("gone", "alice")  # its id is never given again
        await service.link_message(-1001, 42, "issue", first.id)
        await service.audit("alice", "cli.test", "ALI-1", {"n": 1})
        await _alerts(service, s.db, config, clock)
        async with s.db.write() as conn:
            await heartbeats.count(conn, "ali-ceo", clock.now(), "idle", 3)
            await heartbeats.count(conn, "mat-ceo", clock.now(), "worked")
            await heartbeats.note_queue(conn, "aliens", False, clock.now())
            for sql in BY_HAND.values():
                await conn.execute(sql)


async def _alerts(service: FleetService, db: Database, config: Config, clock: ManualClock) -> None:
    outbox = Outbox(db, clock, config)
    book = AlertBook(db, clock, config, outbox)
    finding = Finding(
        AlertKind.AGENT_UNAUTHENTICATED, "agent:ali-qa-2", "aliens", "ali-qa-2", "bad key", "x"
    )
    await book.raise_(finding)
    clock.advance(30)
    await book.flush()
    for n, row in enumerate(await outbox.due(100)):
        assert await outbox.start(row.id)
        await outbox.sent(row.id, 500 + n, row.chat)
    await outbox.enqueue_text("1001", "hello", "greeting")
    await book.mute("agent:ali-qa-2", clock.now() + 3600, "alice", "known")


async def dump(db: Database, table: str) -> list[tuple[tuple[str, Any], ...]]:
    """The table's rows as (column, value) pairs, in an order both engines agree on."""
    rows = await db.fetchall(f"SELECT * FROM {table}")
    return sorted((tuple(sorted(dict(r).items())) for r in rows), key=repr)


@dataclass
class Pair:
    config: Config
    clock: ManualClock
    source: SqliteDatabase
    target: PostgresDatabase


@pytest.fixture
async def pair(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Pair]:
    config = source_config(tmp_path)
    await fill(config, clock)
    url = store_helpers.storage(tmp_path, "target.db")["url"]
    async with SqliteDatabase(config.storage.path) as source, PostgresDatabase(url) as target:
        yield Pair(config, clock, source, target)


async def tables(db: Database) -> list[str]:
    rows = await db.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    return sorted(r[0] for r in rows if r[0] not in copy.NOT_DATA)


@pytest.mark.postgres_only
async def test_every_row_and_id_comes_over(pair: Pair) -> None:
    names = await tables(pair.source)
    empty = [t for t in names if not await dump(pair.source, t)]
    assert empty == [], "the fixture leaves these tables empty: nothing of them is compared"
    copied = await copy.copy_store(pair.source, pair.target)
    assert sorted(copied) == names
    for table in names:
        rows = await dump(pair.source, table)
        assert copied[table] == len(rows), table
        assert await dump(pair.target, table) == rows, table
    # The triggers stayed off for the copy and are on again: one more beat counts once.
    async with pair.target.write() as conn:
        await heartbeats.count(conn, "ali-ceo", pair.clock.now(), "idle")
    total = "SELECT count FROM company_heartbeats WHERE company_id = 'aliens' AND outcome = 'idle'"
    assert await pair.target.scalar(total) == 4


@pytest.mark.postgres_only
async def test_new_rows_get_new_ids(pair: Pair) -> None:
    await copy.copy_store(pair.source, pair.target)
    service = FleetService(pair.target, pair.config, pair.clock)
    top = {
        t: await pair.source.scalar(f"SELECT max(id) FROM {t}")
        for t in ("comments", "audit", "questions", "outbox", "alerts", "summaries")
    }
    comment = await service.comment("ALI-1", "after the move", "alice")
    assert comment.id == top["comments"] + 1
    await service.audit("alice", "cli.test")
    found = await pair.target.fetchall(
        "SELECT id FROM audit WHERE id > ? ORDER BY id", (top["audit"],)
    )
    assert [r[0] for r in found] == [top["audit"] + 1, top["audit"] + 2]  # the comment's, ours
    # SQLite gave routine 2 (`gone`) and deleted it; PostgreSQL must not give 2 again.
    assert await pair.source.scalar("SELECT max(id) FROM routines") == 1
    routine = await service.add_routine(
        name="new", schedule="daily 11:00", assignee="ali-ceo", title="New", actor="alice"
    )
    assert routine.ref == "R3"
    for table in ("questions", "outbox", "alerts", "summaries"):
        async with pair.target.write() as conn:
            found = await conn.execute_fetchall(
                f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))"
            )
        assert found[0][0] == top[table] + 1, table


@pytest.mark.postgres_only
async def test_a_second_copy_is_refused_and_replace_copies_over(pair: Pair) -> None:
    await copy.copy_store(pair.source, pair.target)
    async with pair.source.write() as conn:
        await conn.execute("UPDATE issues SET title = 'Renamed' WHERE id = 'ALI-1'")
    with pytest.raises(StoreError, match=r"already holds fleetbot data \(rows in companies, "):
        await copy.copy_store(pair.source, pair.target)
    assert await pair.target.scalar("SELECT title FROM issues WHERE id = 'ALI-1'") == "Ship it"
    async with pair.target.write() as conn:  # a row only the target has goes too
        await conn.execute("INSERT INTO recipients (chat) VALUES ('only-here')")
    copied = await copy.copy_store(pair.source, pair.target, replace=True)
    for table in await tables(pair.source):
        assert await dump(pair.target, table) == await dump(pair.source, table), table
    assert copied["issues"] == 4
    comment = await FleetService(pair.target, pair.config, pair.clock).comment("ALI-1", "x", "o")
    assert comment.id == await pair.source.scalar("SELECT max(id) FROM comments") + 1


async def _target_is_empty(target: Database) -> None:
    assert await target.scalar("SELECT count(*) FROM companies") == 0


@pytest.mark.postgres_only
async def test_another_schema_version_is_refused(pair: Pair) -> None:
    async with pair.target.write() as conn:
        await conn.execute("UPDATE fleetbot_schema SET version = version - 1")
    version = pair.source.schema_version
    with pytest.raises(StoreError, match=f"at schema version {version} and .* at {version - 1}"):
        await copy.copy_store(pair.source, pair.target)
    await _target_is_empty(pair.target)


@pytest.mark.postgres_only
async def test_another_table_set_is_refused(pair: Pair) -> None:
    async with pair.target.write() as conn:
        await conn.execute("CREATE TABLE extra (id bigint)")
        await conn.execute("ALTER TABLE mutes ADD COLUMN note text")
    with pytest.raises(StoreError, match="tables only in PostgreSQL: extra"):
        await copy.copy_store(pair.source, pair.target)
    async with pair.target.write() as conn:
        await conn.execute("DROP TABLE extra")
    with pytest.raises(StoreError, match="mutes: columns only in PostgreSQL: note"):
        await copy.copy_store(pair.source, pair.target)
    await _target_is_empty(pair.target)


@pytest.mark.postgres_only
async def test_a_row_postgresql_cannot_hold_stops_the_whole_copy(pair: Pair) -> None:
    path = pair.source.path
    with sqlite3.connect(path) as raw:  # SQLite keeps a fraction in an INTEGER column
        raw.execute("UPDATE issues SET attempts = 1.5 WHERE id = 'ALI-2'")
    with pytest.raises(StoreError, match=r"issues.attempts holds 1.5 \(id 'ALI-2'\)"):
        await copy.copy_store(pair.source, pair.target)
    await _target_is_empty(pair.target)
    with sqlite3.connect(path) as raw:  # and, with its foreign keys off, an orphan
        raw.execute("UPDATE issues SET attempts = 1 WHERE id = 'ALI-2'")
        raw.execute(
            "INSERT INTO comments (issue_id, author, body, created_at) VALUES (?,?,?,?)",
            ("ALI-99", "x", "orphan", 1.0),
        )
    with pytest.raises(StoreError, match=r"refused a row of comments .*ForeignKeyViolation"):
        await copy.copy_store(pair.source, pair.target)
    await _target_is_empty(pair.target)


async def test_only_sqlite_into_postgresql(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "a.db") as a, SqliteDatabase(tmp_path / "b.db") as b:
        with pytest.raises(StoreError, match="from SQLite into PostgreSQL, not from sqlite into"):
            await copy.copy_store(a, b)


def test_values_are_fitted_to_the_postgresql_column() -> None:
    fits = copy._FITS
    assert fits["bigint"](3.0) == 3 and type(fits["bigint"](3.0)) is int
    assert fits["double precision"](1767225600) == 1767225600.0
    assert type(fits["double precision"](7)) is float
    assert fits["text"](12) == "12" and fits["text"]("a\x00b") == "a\ufffdb"
    for kind, value in (
        ("bigint", 1.5),
        ("bigint", "x"),
        ("double precision", "1"),
        ("text", b"\x01"),
    ):
        with pytest.raises(ValueError):
            fits[kind](value)
