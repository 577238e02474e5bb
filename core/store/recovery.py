"""What the core did on its own, recorded so that each is done once: loops stopped, blocked
issues escalated, agents auto-reset, budgets enforced."""

from __future__ import annotations

import json
from collections.abc import Sequence

from core.store.conn import Conn
from core.store.db import fetch_all, fetch_one


async def record_loop(
    conn: Conn, issue_id: str, dispatches: int, window: float, now: float
) -> None:
    """The loop guard stopped `issue_id` after `dispatches` runs within `window` seconds."""
    await conn.execute(
        "INSERT INTO recovery_loops (issue_id, dispatches, window_seconds, at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (issue_id) DO UPDATE SET "
        "dispatches = excluded.dispatches, window_seconds = excluded.window_seconds, "
        "at = excluded.at",
        (issue_id, dispatches, window, now),
    )


async def escalate(conn: Conn, issue_id: str, chain: Sequence[str], to: str, now: float) -> bool:
    """Record that `issue_id` goes to `to` (an agent id, or "owner"); False if it already went."""
    cur = await conn.execute(
        "INSERT INTO escalations (issue_id, chain, escalated_to, at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (issue_id) DO NOTHING",
        (issue_id, json.dumps(list(chain)), to, now),
    )
    return cur.rowcount == 1


async def escalated_as(conn: Conn, issue_id: str, filed: str) -> None:
    """The escalation of `issue_id` was filed as issue `filed`."""
    await conn.execute(
        "UPDATE escalations SET escalation_issue = ? WHERE issue_id = ?", (filed, issue_id)
    )


async def escalations(conn: Conn, issue_id: str | None = None) -> dict[str, tuple[str, str | None]]:
    """issue id -> (escalated to, the escalation's issue id), for one issue or all."""
    sql = "SELECT issue_id, escalated_to, escalation_issue FROM escalations"
    args: tuple[str, ...] = ()
    if issue_id is not None:
        sql, args = sql + " WHERE issue_id = ?", (issue_id,)
    return {r[0]: (r[1], r[2]) for r in await fetch_all(conn, sql, args)}


async def auto_reset_attempts(conn: Conn, agent_id: str) -> int:
    row = await fetch_one(conn, "SELECT attempts FROM auto_resets WHERE agent_id = ?", (agent_id,))
    return row[0] if row else 0


async def schedule_auto_reset(conn: Conn, agent_id: str, attempts: int, at: float) -> None:
    await conn.execute(
        "INSERT INTO auto_resets (agent_id, attempts, next_at) VALUES (?, ?, ?) "
        "ON CONFLICT (agent_id) DO UPDATE SET next_at = excluded.next_at",
        (agent_id, attempts, at),
    )


async def forget_auto_resets(conn: Conn, agent_id: str) -> None:
    await conn.execute("DELETE FROM auto_resets WHERE agent_id = ?", (agent_id,))


async def auto_resets_due(conn: Conn, now: float) -> list[str]:
    """Agents still in error whose auto-reset time has come."""
    found = await fetch_all(
        conn,
        "SELECT r.agent_id FROM auto_resets r JOIN agents a ON a.id = r.agent_id "
        "WHERE r.next_at <= ? AND a.status = 'error' AND a.deleted_at IS NULL",
        (now,),
    )
    return [r[0] for r in found]


async def take_auto_reset(conn: Conn, agent_id: str, now: float) -> bool:
    """Count an auto-reset that is due now; False if it is not (or another took it)."""
    cur = await conn.execute(
        "UPDATE auto_resets SET attempts = attempts + 1, next_at = NULL, last_at = ? "
        "WHERE agent_id = ? AND next_at <= ?",
        (now, agent_id, now),
    )
    return cur.rowcount == 1


async def auto_reset_schedule(conn: Conn) -> dict[str, tuple[int, float | None]]:
    """agent id -> (auto-resets so far, next one at)."""
    found = await fetch_all(conn, "SELECT agent_id, attempts, next_at FROM auto_resets")
    return {r[0]: (r[1], r[2]) for r in found}


async def take_budget_action(conn: Conn, subject: str, month: str, action: str, now: float) -> bool:
    """Record `action` on `subject` for `month`; False if it was already taken this month."""
    cur = await conn.execute(
        "INSERT INTO budget_actions (subject, month, action, at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (subject, month, action, now),
    )
    return cur.rowcount == 1
