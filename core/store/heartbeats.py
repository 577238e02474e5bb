"""Heartbeat counters: beats per agent, day and outcome, and companies' empty-queue streaks.

Triggers (schema migration 3) mirror `heartbeats` into per-company daily totals, so whatever
writes here is counted there too.
"""

from __future__ import annotations

from core.clock import day_key
from core.store.conn import Conn
from core.store.db import fetch_all


async def count(conn: Conn, agent_id: str, now: float, outcome: str, n: int = 1) -> None:
    await conn.execute(
        "INSERT INTO heartbeats (agent_id, day, outcome, count) VALUES (?, ?, ?, ?) "
        # The target table named: PostgreSQL calls a bare `count` here ambiguous (issue 14).
        "ON CONFLICT (agent_id, day, outcome) "
        "DO UPDATE SET count = heartbeats.count + excluded.count",
        (agent_id, day_key(now), outcome, n),
    )


async def note_queue(conn: Conn, company_id: str, has_work: bool, now: float) -> None:
    """A beat found the company with work (the streak ends) or without (it grows)."""
    if has_work:
        await conn.execute(
            "UPDATE queue_watch SET empty_beats = 0, empty_since = NULL WHERE company_id = ?",
            (company_id,),
        )
    else:
        await conn.execute(
            "INSERT INTO queue_watch (company_id, empty_beats, empty_since) VALUES (?, 1, ?) "
            "ON CONFLICT (company_id) DO UPDATE SET empty_beats = queue_watch.empty_beats + 1, "
            "empty_since = COALESCE(queue_watch.empty_since, excluded.empty_since)",
            (company_id, now),
        )


async def empty_queues(conn: Conn) -> dict[str, tuple[int, float | None]]:
    """company id -> (beats in a row that found no work, since when)."""
    found = await fetch_all(conn, "SELECT company_id, empty_beats, empty_since FROM queue_watch")
    return {r[0]: (r[1], r[2]) for r in found}
