"""Summaries: what agents post for their team chat (through the API, or as a run's last words)."""

from __future__ import annotations

from typing import Any

from core.store.conn import Conn
from core.store.db import fetch_one, inserted_id


async def add(
    conn: Conn,
    agent_id: str,
    issue_id: str | None,
    run_id: str | None,
    source: str,
    body: str,
    now: float,
) -> int:
    return await inserted_id(
        conn,
        "INSERT INTO summaries (agent_id, issue_id, run_id, source, body, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (agent_id, issue_id, run_id, source, body, now),
    )


async def shown(conn: Conn, summary_id: int) -> dict[str, Any] | None:
    """What a summary message shows: body, issue id, source, and the agent's name, role and
    company."""
    row = await fetch_one(
        conn,
        "SELECT s.body, s.issue_id, s.source, a.name, a.role, a.company_id FROM summaries s "
        "JOIN agents a ON a.id = s.agent_id WHERE s.id = ?",
        (summary_id,),
    )
    return None if row is None else dict(row)
