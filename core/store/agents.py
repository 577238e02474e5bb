"""Agents in the store: lookups, every status change, and the heartbeat schedule.

`set_status` is the one place an agent's status is written; it returns the AgentStatusChanged
event for the caller to publish after its transaction commits. An agent removed from the config
is soft-deleted (`deleted_at`) and invisible to every read here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from core.events import AgentStatusChanged
from core.models import Agent, AgentStatus
from core.store import rows
from core.store.conn import Conn
from core.store.db import fetch_all, fetch_one

_SELECT = f"SELECT {rows.AGENT_COLUMNS} FROM agents WHERE deleted_at IS NULL"


async def get(conn: Conn, agent_id: str) -> Agent | None:
    row = await fetch_one(conn, f"{_SELECT} AND id = ?", (agent_id,))
    return None if row is None else rows.agent(row)


async def roster(conn: Conn, company_id: str | None = None) -> list[Agent]:
    """Every agent (of one company), by company and id."""
    sql = _SELECT
    args: tuple[str, ...] = ()
    if company_id is not None:
        sql, args = sql + " AND company_id = ?", (company_id,)
    return [rows.agent(r) for r in await fetch_all(conn, sql + " ORDER BY company_id, id", args)]


async def with_role(conn: Conn, role: str, company_id: str | None = None) -> list[Agent]:
    sql = f"{_SELECT} AND role = ?"
    args: tuple[str, ...] = (role,)
    if company_id is not None:
        sql, args = sql + " AND company_id = ?", (role, company_id)
    return [rows.agent(r) for r in await fetch_all(conn, sql + " ORDER BY id", args)]


async def in_status(conn: Conn, statuses: Sequence[AgentStatus]) -> list[Agent]:
    marks = ",".join("?" for _ in statuses)
    found = await fetch_all(
        conn,
        f"{_SELECT} AND status IN ({marks}) ORDER BY company_id, id",
        tuple(s.value for s in statuses),
    )
    return [rows.agent(r) for r in found]


async def due(conn: Conn, now: float, limit: int = 1000) -> list[str]:
    """Agents whose heartbeat is due, most overdue first (an index range scan)."""
    found = await fetch_all(
        conn,
        "SELECT id FROM agents WHERE deleted_at IS NULL AND next_heartbeat_at <= ? "
        "ORDER BY next_heartbeat_at LIMIT ?",
        (now, limit),
    )
    return [r[0] for r in found]


async def next_due_at(conn: Conn) -> float | None:
    row = await fetch_one(
        conn, "SELECT min(next_heartbeat_at) FROM agents WHERE deleted_at IS NULL"
    )
    return None if row is None or row[0] is None else float(row[0])


async def set_status(
    conn: Conn,
    agent: Agent,
    new: AgentStatus,
    now: float,
    reason: str = "",
    reason_code: str = "",
) -> AgentStatusChanged | None:
    """Change the agent's status (always with a reason); returns the event, or None if unchanged."""
    if agent.status is new and agent.reason_code == reason_code and agent.reason == reason:
        return None
    await conn.execute(
        "UPDATE agents SET status = ?, reason = ?, reason_code = ?, status_changed_at = ? "
        "WHERE id = ?",
        (new.value, reason, reason_code, now, agent.id),
    )
    if agent.status is new:
        return None
    return AgentStatusChanged(
        agent_id=agent.id,
        company_id=agent.company_id,
        old=agent.status,
        new=new,
        reason=reason,
        reason_code=reason_code,
    )


async def set_role(conn: Conn, agent_id: str, role: str, actor: str, skills: Sequence[str]) -> None:
    """A role set by an operator (`role_set_by`) wins over the config from now on."""
    await conn.execute(
        "UPDATE agents SET role = ?, role_set_by = ?, skills = ? WHERE id = ?",
        (role, actor, json.dumps(list(skills)), agent_id),
    )


async def beat_at(conn: Conn, agent_id: str, at: float) -> None:
    """The agent's next heartbeat is at `at` (now: wake it)."""
    await conn.execute("UPDATE agents SET next_heartbeat_at = ? WHERE id = ?", (at, agent_id))


async def beat_by(conn: Conn, agent_id: str, at: float) -> None:
    """The agent's next heartbeat is at `at` at the latest (a retry due before its interval)."""
    await conn.execute(
        "UPDATE agents SET next_heartbeat_at = LEAST(next_heartbeat_at, ?) WHERE id = ?",
        (at, agent_id),
    )


async def seen(conn: Conn, agent_id: str, now: float) -> None:
    """The agent was heard from (a usage report, a summary)."""
    await conn.execute("UPDATE agents SET last_seen_at = ? WHERE id = ?", (now, agent_id))


async def revoke_tokens(conn: Conn, agent_id: str) -> None:
    """Bump the token version: every token issued to the agent so far fails as revoked."""
    await conn.execute(
        "UPDATE agents SET token_version = token_version + 1 WHERE id = ?", (agent_id,)
    )
