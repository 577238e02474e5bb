"""The group-by queries behind core.reports: small aggregates, each an index scan.

runs.company_id and company_heartbeats (schema migration 3) spare the board a join per row.
"""

from __future__ import annotations

from core.clock import day_key
from core.models import HeartbeatOutcome, Issue
from core.store import rows
from core.store.conn import Conn
from core.store.db import fetch_all

# An LLM call saved: a heartbeat that woke no model (no work, or a paused, erroring,
# unauthenticated or busy agent skipped). The one definition /status, /costs and the digest
# count by.
_SAVED = f"outcome != '{HeartbeatOutcome.DISPATCHED.value}'"


async def agents_by_status(conn: Conn) -> list[tuple[str, str, int]]:
    """(company id, agent status, agents)."""
    found = await fetch_all(
        conn,
        "SELECT company_id, status, count(*) FROM agents WHERE deleted_at IS NULL "
        "GROUP BY company_id, status",
    )
    return [(r[0], r[1], r[2]) for r in found]


async def issues_by_status(conn: Conn) -> list[tuple[str, str, int]]:
    """(company id, issue status, issues)."""
    found = await fetch_all(
        conn, "SELECT company_id, status, count(*) FROM issues GROUP BY company_id, status"
    )
    return [(r[0], r[1], r[2]) for r in found]


async def company_runs(conn: Conn, since: float) -> list[tuple[str, int, int, float]]:
    """(company id, runs started since `since`, their tokens, their cost)."""
    found = await fetch_all(
        conn,
        "SELECT company_id, count(*), coalesce(sum(input_tokens + output_tokens), 0), "
        "coalesce(sum(cost), 0) FROM runs WHERE started_at >= ? GROUP BY company_id",
        (since,),
    )
    return [(r[0], r[1], r[2], r[3]) for r in found]


async def company_saved_calls(conn: Conn, since: float) -> dict[str, int]:
    """company id -> LLM calls saved (heartbeats that woke no model), from the day of `since`
    on (the per-company totals)."""
    found = await fetch_all(
        conn,
        "SELECT company_id, sum(count) FROM company_heartbeats "
        f"WHERE {_SAVED} AND day >= ? GROUP BY company_id",
        (day_key(since),),
    )
    return {r[0]: r[1] for r in found}


async def saved_calls_by_agent_company(conn: Conn, since: float) -> dict[str, int]:
    """company id -> LLM calls saved (heartbeats that woke no model), from the day of `since`
    on, counted over the companies' current agents."""
    found = await fetch_all(
        conn,
        "SELECT a.company_id, sum(h.count) FROM heartbeats h JOIN agents a ON a.id = h.agent_id "
        f"WHERE h.day >= ? AND h.{_SAVED} GROUP BY a.company_id",
        (day_key(since),),
    )
    return {r[0]: r[1] for r in found}


async def filed_since(conn: Conn, since: float) -> dict[str, int]:
    found = await fetch_all(
        conn,
        "SELECT company_id, count(*) FROM issues WHERE created_at >= ? GROUP BY company_id",
        (since,),
    )
    return {r[0]: r[1] for r in found}


async def done_since(conn: Conn, since: float) -> dict[str, int]:
    found = await fetch_all(
        conn,
        "SELECT company_id, count(*) FROM issues WHERE status = 'done' AND updated_at >= ? "
        "GROUP BY company_id",
        (since,),
    )
    return {r[0]: r[1] for r in found}


async def newest_blocked(conn: Conn, limit: int = 200) -> list[Issue]:
    found = await fetch_all(
        conn,
        f"SELECT {rows.ISSUE_COLUMNS} FROM issues WHERE status = 'blocked' "
        "ORDER BY updated_at DESC LIMIT ?",
        (limit,),
    )
    return [rows.issue(r) for r in found]


async def runs_by_status(conn: Conn, since: float) -> list[tuple[str, str, int, float]]:
    """(company id, run status, runs started since `since`, their cost)."""
    found = await fetch_all(
        conn,
        "SELECT a.company_id, r.status, count(*), coalesce(sum(r.cost), 0) FROM runs r "
        "JOIN agents a ON a.id = r.agent_id WHERE r.started_at >= ? GROUP BY 1, 2",
        (since,),
    )
    return [(r[0], r[1], r[2], r[3]) for r in found]


async def summaries_since(
    conn: Conn, since: float, limit: int
) -> list[tuple[str, str, str | None, str, float]]:
    """(agent id, company id, issue id, body, created at) of the newest summaries."""
    found = await fetch_all(
        conn,
        "SELECT s.agent_id, a.company_id, s.issue_id, s.body, s.created_at FROM summaries s "
        "JOIN agents a ON a.id = s.agent_id WHERE s.created_at >= ? "
        "ORDER BY s.id DESC LIMIT ?",
        (since, limit),
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in found]


async def agent_usage(
    conn: Conn,
    start: float,
    end: float,
    company_id: str | None,
    planner: str = "",
) -> list[tuple[str, str, int, int, int, float, int, float, int]]:
    """(agent id, company id, runs, input tokens, output tokens, cost, planning runs, their
    cost, failed runs) of runs started in [start, end), of one company or all. Planning runs
    are runs on issues created by `planner` (core.queues.planner: deliberate LLM calls)."""
    where, args = "", tuple[str, ...]()
    if company_id is not None:
        where, args = " AND a.company_id = ?", (company_id,)
    found = await fetch_all(
        conn,
        "SELECT r.agent_id, a.company_id, count(*), sum(r.input_tokens), "
        "sum(r.output_tokens), sum(r.cost), "
        "sum(CASE WHEN i.created_by = ? THEN 1 ELSE 0 END), "
        "sum(CASE WHEN i.created_by = ? THEN r.cost ELSE 0 END), "
        "sum(CASE WHEN r.status IN ('failed', 'timed_out') THEN 1 ELSE 0 END) "
        "FROM runs r JOIN agents a ON a.id = r.agent_id LEFT JOIN issues i ON i.id = r.issue_id "
        f"WHERE r.started_at >= ? AND r.started_at < ?{where} GROUP BY r.agent_id, a.company_id",
        (planner, planner, start, end, *args),
    )
    return [
        (
            r[0],
            r[1],
            r[2],
            r[3] or 0,
            r[4] or 0,
            float(r[5] or 0.0),
            r[6] or 0,
            float(r[7] or 0.0),
            r[8] or 0,
        )
        for r in found
    ]


async def closed_by_agent(
    conn: Conn, start: float, end: float, company_id: str | None
) -> dict[str, int]:
    """assignee id -> issues that reached done in [start, end) (their last update)."""
    where, args = "", tuple[str, ...]()
    if company_id is not None:
        where, args = " AND company_id = ?", (company_id,)
    found = await fetch_all(
        conn,
        "SELECT assignee_id, count(*) FROM issues WHERE status = 'done' "
        "AND assignee_id IS NOT NULL AND updated_at >= ? AND updated_at < ?"
        f"{where} GROUP BY assignee_id",
        (start, end, *args),
    )
    return {r[0]: r[1] for r in found}


async def audited_issues_since(
    conn: Conn, action: str, since: float, limit: int = 200
) -> list[tuple[str, str]]:
    """(company id, issue id) of the newest audit rows of one issue action since `since`,
    newest first (the digest's promotions)."""
    found = await fetch_all(
        conn,
        "SELECT i.company_id, a.target FROM audit a JOIN issues i ON i.id = a.target "
        "WHERE a.action = ? AND a.at >= ? ORDER BY a.id DESC LIMIT ?",
        (action, since, limit),
    )
    return [(r[0], r[1]) for r in found]


async def agent_skipped_beats(
    conn: Conn, start: float, end: float, company_id: str | None
) -> list[tuple[str, str, str, int]]:
    """(agent id, company id, heartbeat outcome, beats) of every beat that woke no model, on
    the days of [start, end)."""
    where, args = "", tuple[str, ...]()
    if company_id is not None:
        where, args = " AND a.company_id = ?", (company_id,)
    found = await fetch_all(
        conn,
        "SELECT h.agent_id, a.company_id, h.outcome, sum(h.count) FROM heartbeats h "
        f"JOIN agents a ON a.id = h.agent_id WHERE h.day >= ? AND h.day < ? AND h.{_SAVED}"
        f"{where} GROUP BY h.agent_id, a.company_id, h.outcome",
        (day_key(start), day_key(end), *args),
    )
    return [(r[0], r[1], r[2], int(r[3])) for r in found]
