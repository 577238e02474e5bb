"""Per-company totals kept by the schema: runs.company_id and company_heartbeats (migration 3).

The board reads these instead of joining every run and heartbeat counter to its agent, so they
must agree with that join after every kind of write, and after upgrading an older database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from store_helpers import storage

from core.clock import ManualClock
from core.config import Config, parse_config
from core.reports.board import fleet_board
from core.service import FleetService
from core.store import heartbeats
from core.store.db import Database
from core.store.schema import MIGRATIONS
from core.store.sqlite import SqliteDatabase

NOW = 1_767_225_600.0 + 10 * 86400  # 2026-01-11


def _config(tmp_path: Path) -> Config:
    return parse_config(
        {
            "storage": storage(tmp_path, "t.db"),
            "companies": [
                {
                    "id": "aliens",
                    "name": "A",
                    "prefix": "ALI",
                    "agents": [{"id": "a1", "role": "cto"}],
                },
                {
                    "id": "matrix",
                    "name": "M",
                    "prefix": "MAT",
                    "agents": [{"id": "m1", "role": "cto"}, {"id": "m2", "role": "qa"}],
                },
            ],
        },
        "test",
    )


async def _joined(db: Database) -> dict[tuple[str, str, str], int]:
    found = await db.fetchall(
        "SELECT a.company_id, h.day, h.outcome, sum(h.count) FROM heartbeats h "
        "JOIN agents a ON a.id = h.agent_id GROUP BY 1, 2, 3"
    )
    return {(r[0], r[1], r[2]): r[3] for r in found}


async def _totals(db: Database) -> dict[tuple[str, str, str], int]:
    found = await db.fetchall(
        "SELECT company_id, day, outcome, count FROM company_heartbeats WHERE count != 0"
    )
    return {(r[0], r[1], r[2]): r[3] for r in found}


async def test_heartbeat_totals_follow_inserts_updates_and_deletes(tmp_path: Path) -> None:
    config = _config(tmp_path)
    async with SqliteDatabase(tmp_path / "t.db") as db:
        await FleetService(db, config, ManualClock(NOW)).sync_config()
        async with db.write() as conn:
            for agent, at, outcome, n in [
                ("a1", NOW, "no_work", 1),
                ("a1", NOW, "no_work", 2),  # the upsert's UPDATE path
                ("m1", NOW, "no_work", 1),
                ("m2", NOW, "no_work", 4),
                ("m2", NOW + 86400, "dispatched", 1),
            ]:
                await heartbeats.count(conn, agent, at, outcome, n)
        assert await _totals(db) == await _joined(db)
        assert (await _totals(db))[("matrix", "2026-01-11", "no_work")] == 5
        async with db.write() as conn:
            await conn.execute("DELETE FROM heartbeats WHERE agent_id = 'm2'")
        assert await _totals(db) == await _joined(db)
        boards = {b.company.id: b for b in await fleet_board(db, NOW + 86400)}
        assert (boards["aliens"].saved_calls, boards["matrix"].saved_calls) == (3, 1)


async def test_runs_get_their_company_and_the_board_counts_this_month(tmp_path: Path) -> None:
    config = _config(tmp_path)
    async with SqliteDatabase(tmp_path / "t.db") as db:
        await FleetService(db, config, ManualClock(NOW)).sync_config()
        async with db.write() as conn:
            for run_id, agent, started in [
                ("r1", "m1", NOW),
                ("r2", "m2", NOW),
                ("r3", "a1", NOW),
                ("r0", "m1", NOW - 40 * 86400),  # last month: not on this month's board
            ]:
                await conn.execute(
                    "INSERT INTO runs (id, agent_id, status, started_at, deadline, max_turns, "
                    "model, last_progress_at, input_tokens, output_tokens, cost) "
                    "VALUES (?, ?, 'succeeded', ?, ?, 50, 'm', ?, 100, 10, 0.5)",
                    (run_id, agent, started, started + 60, started),
                )
        found = await db.fetchall("SELECT id, company_id FROM runs ORDER BY id")
        assert [tuple(r) for r in found] == [
            ("r0", "matrix"),
            ("r1", "matrix"),
            ("r2", "matrix"),
            ("r3", "aliens"),
        ]
        boards = {b.company.id: b for b in await fleet_board(db, NOW)}
        assert (boards["matrix"].llm_calls, boards["matrix"].tokens) == (2, 220)
        assert (boards["aliens"].llm_calls, boards["aliens"].cost) == (1, 0.5)


async def test_upgrading_an_older_store_backfills_both(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for script in MIGRATIONS[:2]:
            conn.executescript(script)
        conn.executescript(
            "INSERT INTO companies (id, name, prefix) VALUES ('aliens', 'A', 'ALI');"
            "INSERT INTO agents (id, company_id, name, role, status_changed_at, model, "
            "heartbeat_seconds, next_heartbeat_at, max_turns, run_timeout_seconds) "
            "VALUES ('a1', 'aliens', 'A1', 'cto', 0, 'm', 14400, 0, 50, 1800);"
            "INSERT INTO runs (id, agent_id, status, started_at, deadline, max_turns, model, "
            "last_progress_at) VALUES ('r1', 'a1', 'succeeded', 1, 2, 50, 'm', 1);"
            "INSERT INTO heartbeats VALUES ('a1', '2026-01-11', 'no_work', 7);"
            "PRAGMA user_version = 2;"
        )
    finally:
        conn.close()
    async with SqliteDatabase(path) as db:
        assert await db.scalar("SELECT company_id FROM runs WHERE id = 'r1'") == "aliens"
        assert await _totals(db) == {("aliens", "2026-01-11", "no_work"): 7}
