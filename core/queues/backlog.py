"""Backlog promotion: an agent whose inbox runs empty gets its top backlog item(s), at no LLM cost.

Runs inside the heartbeat's transaction (core.engine.heartbeat), so the promoted issue is
dispatched by that same beat: an agent never sits idle while its backlog holds work. The order
is the inbox's (priority, then age); `defaults.backlog_promote` items at a time (0: never), so
what stays in the backlog can still be re-ordered from the phone. Each promotion is an audit
row (`issue.promote` by fleetbot), which the digest lists.
"""

from __future__ import annotations

from core.models import Agent, Issue
from core.store import audit, issues as issue_store
from core.store.conn import Conn

ACTOR = "fleetbot"
ACTION = "issue.promote"


async def promote_for(conn: Conn, agent: Agent, count: int, now: float) -> list[Issue]:
    """Promote up to `count` of the agent's backlog items to todo; the ones promoted."""
    out = []
    for item in await issue_store.backlog(conn, assignee_id=agent.id, limit=count):
        if await issue_store.promote(conn, item.id, now):
            await audit.record(
                conn,
                now,
                ACTOR,
                ACTION,
                item.id,
                {"assignee": agent.id, "priority": item.priority, "why": "inbox empty"},
            )
            out.append(item)
    return out


async def has_promotable(conn: Conn, agent_id: str) -> bool:
    """Would the agent's next beat promote something (empty inbox, a backlog of its own)?"""
    if await issue_store.has_inbox(conn, agent_id):
        return False
    return bool(await issue_store.backlog(conn, assignee_id=agent_id, limit=1))
