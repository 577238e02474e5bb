"""Statements shared by several parts of the core, each run inside the caller's transaction."""

from __future__ import annotations

import json

import aiosqlite

from core.clock import day_key
from core.events import AgentStatusChanged
from core.models import Agent, AgentStatus, Issue, IssueStatus, Run
from core.store import rows


async def _by_key(conn: aiosqlite.Connection, sql: str, key: str) -> aiosqlite.Row | None:
    # One hop to the connection's thread, not three (execute, fetchone, close): these lookups
    # run several times in every heartbeat and run ending.
    found = list(await conn.execute_fetchall(sql, (key,)))
    return found[0] if found else None


async def fetch_agent(conn: aiosqlite.Connection, agent_id: str) -> Agent | None:
    sql = f"SELECT {rows.AGENT_COLUMNS} FROM agents WHERE id = ? AND deleted_at IS NULL"
    row = await _by_key(conn, sql, agent_id)
    return None if row is None else rows.agent(row)


async def fetch_issue(conn: aiosqlite.Connection, issue_id: str) -> Issue | None:
    row = await _by_key(conn, f"SELECT {rows.ISSUE_COLUMNS} FROM issues WHERE id = ?", issue_id)
    return None if row is None else rows.issue(row)


async def fetch_run(conn: aiosqlite.Connection, run_id: str) -> Run | None:
    row = await _by_key(conn, f"SELECT {rows.RUN_COLUMNS} FROM runs WHERE id = ?", run_id)
    return None if row is None else rows.run(row)


async def set_agent_status(
    conn: aiosqlite.Connection,
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


async def release_issue(
    conn: aiosqlite.Connection,
    issue_id: str,
    run_id: str,
    now: float,
    backoff: float,
    *,
    failed: bool = True,
) -> Issue | None:
    """Drop `run_id`'s lease on the issue, if it still holds it, and decide what comes next.

    Compare-and-set: only the lease of this very run is released, and only an open issue is
    touched, so a run ending late can never reopen finished work. An issue whose attempt
    budget is spent becomes `blocked`; otherwise it waits `backoff * 2^(attempts-1)` before
    its agent may pick it up again. A run that did not fail (`failed=False`: cancelled by an
    operator) gives its attempt back and waits for no backoff. Returns the issue as it is now,
    or None if untouched.
    """
    issue = await fetch_issue(conn, issue_id)
    if issue is None or issue.lease_run_id != run_id or issue.status.terminal:
        return None
    if not failed:
        await conn.execute(
            "UPDATE issues SET lease_run_id = NULL, lease_until = NULL, "
            "attempts = MAX(0, attempts - 1), updated_at = ? WHERE id = ? AND lease_run_id = ?",
            (now, issue_id, run_id),
        )
        return await fetch_issue(conn, issue_id)
    if issue.attempts >= issue.max_attempts and issue.status in (
        IssueStatus.TODO,
        IssueStatus.IN_PROGRESS,
    ):
        reason = f"attempt budget spent: {issue.attempts} of {issue.max_attempts} runs failed"
        await conn.execute(
            "UPDATE issues SET status = 'blocked', reason = ?, lease_run_id = NULL, "
            "lease_until = NULL, updated_at = ? WHERE id = ? AND lease_run_id = ?",
            (reason, now, issue_id, run_id),
        )
    else:
        wait = backoff * (2 ** max(0, issue.attempts - 1))
        await conn.execute(
            "UPDATE issues SET lease_run_id = NULL, lease_until = NULL, not_before = ?, "
            "updated_at = ? WHERE id = ? AND lease_run_id = ?",
            (now + wait, now, issue_id, run_id),
        )
        if issue.assignee_id is not None:
            # The retry is due after the backoff, not at the next (hours away) heartbeat.
            await conn.execute(
                "UPDATE agents SET next_heartbeat_at = MIN(next_heartbeat_at, ?) WHERE id = ?",
                (now + wait, issue.assignee_id),
            )
    return await fetch_issue(conn, issue_id)


async def count_heartbeat(
    conn: aiosqlite.Connection, agent_id: str, now: float, outcome: str, n: int = 1
) -> None:
    await conn.execute(
        "INSERT INTO heartbeats (agent_id, day, outcome, count) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (agent_id, day, outcome) DO UPDATE SET count = count + excluded.count",
        (agent_id, day_key(now), outcome, n),
    )


async def audit(
    conn: aiosqlite.Connection,
    now: float,
    actor: str,
    action: str,
    target: str = "",
    detail: object = "",
    result: str = "ok",
) -> None:
    text = detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True, default=str)
    await conn.execute(
        "INSERT INTO audit (at, actor, action, target, detail, result) VALUES (?, ?, ?, ?, ?, ?)",
        (now, actor, action, target, text, result),
    )
