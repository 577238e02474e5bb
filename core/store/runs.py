"""Runs in the store: opened, fed with usage, ended once (compare-and-set on `running`)."""

from __future__ import annotations

from collections.abc import Iterable

from core.models import Agent, Run, RunStatus
from core.store import rows
from core.store.conn import Conn
from core.store.db import fetch_all, fetch_one

_SELECT = f"SELECT {rows.RUN_COLUMNS} FROM runs"


async def get(conn: Conn, run_id: str) -> Run | None:
    row = await fetch_one(conn, f"{_SELECT} WHERE id = ?", (run_id,))
    return None if row is None else rows.run(row)


async def recent(conn: Conn, agent_id: str | None, limit: int) -> list[Run]:
    """The newest runs (of one agent)."""
    sql = _SELECT
    args: tuple[str, ...] = ()
    if agent_id is not None:
        sql, args = sql + " WHERE agent_id = ?", (agent_id,)
    found = await fetch_all(conn, sql + " ORDER BY started_at DESC LIMIT ?", (*args, limit))
    return [rows.run(r) for r in found]


async def live(conn: Conn) -> list[Run]:
    return [rows.run(r) for r in await fetch_all(conn, f"{_SELECT} WHERE status = 'running'")]


async def live_ids(conn: Conn) -> list[str]:
    return [r[0] for r in await fetch_all(conn, "SELECT id FROM runs WHERE status = 'running'")]


async def ended_among(conn: Conn, run_ids: Iterable[str]) -> dict[str, RunStatus]:
    """Those of `run_ids` no longer running, with how they ended."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    marks = ", ".join("?" * len(ids))
    found = await fetch_all(
        conn, f"SELECT id, status FROM runs WHERE id IN ({marks}) AND status <> 'running'", ids
    )
    return {r[0]: RunStatus(r[1]) for r in found}


async def orphan_ids(conn: Conn, alive: Iterable[str]) -> list[str]:
    """Live runs whose turn no live replica runs (the replica that dispatched it is gone)."""
    keep = sorted(set(alive))
    if not keep:
        return await live_ids(conn)
    marks = ", ".join("?" * len(keep))
    found = await fetch_all(
        conn,
        f"SELECT id FROM runs WHERE status = 'running' AND replica NOT IN ({marks})",
        keep,
    )
    return [r[0] for r in found]


async def overdue_ids(conn: Conn, now: float, limit: int | None = None) -> list[str]:
    """Live runs past their deadline (`limit` None: all of them)."""
    found = await fetch_all(
        conn,
        "SELECT id FROM runs WHERE status = 'running' AND deadline < ?"
        + ("" if limit is None else f" LIMIT {int(limit)}"),
        (now,),
    )
    return [r[0] for r in found]


async def started_since(conn: Conn, issue_id: str, since: float) -> int:
    """How many runs of the issue started after `since`."""
    row = await fetch_one(
        conn, "SELECT count(*) FROM runs WHERE issue_id = ? AND started_at > ?", (issue_id, since)
    )
    return 0 if row is None else int(row[0])


async def insert(
    conn: Conn,
    run_id: str,
    agent: Agent,
    issue_id: str,
    now: float,
    deadline: float,
    model: str,
    replica: str = "",
) -> Run:
    await conn.execute(
        "INSERT INTO runs (id, agent_id, company_id, issue_id, status, started_at, deadline, "
        "max_turns, model, last_progress_at, replica)"
        " VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
        (
            run_id,
            agent.id,
            agent.company_id,
            issue_id,
            now,
            deadline,
            agent.max_turns,
            model,
            now,
            replica,
        ),
    )
    run = await get(conn, run_id)
    assert run is not None
    return run


async def attach_issue(conn: Conn, run_id: str, issue_id: str) -> None:
    """A run opened without an issue claimed one."""
    await conn.execute("UPDATE runs SET issue_id = ? WHERE id = ?", (issue_id, run_id))


async def record_usage(
    conn: Conn,
    run_id: str,
    *,
    turns: int,
    input_tokens: int,
    output_tokens: int,
    cost: float,
    model: str | None,
    now: float,
) -> None:
    """Usage totals so far; each only grows, so a repeated or late report changes nothing."""
    await conn.execute(
        "UPDATE runs SET turns = GREATEST(turns, ?), input_tokens = GREATEST(input_tokens, ?), "
        "output_tokens = GREATEST(output_tokens, ?), cost = GREATEST(cost, ?), "
        "model = COALESCE(?, model), last_progress_at = ? WHERE id = ?",
        (turns, input_tokens, output_tokens, cost, model, now, run_id),
    )


async def set_external_id(conn: Conn, run_id: str, external_id: str) -> None:
    await conn.execute("UPDATE runs SET external_id = ? WHERE id = ?", (external_id, run_id))


async def end(
    conn: Conn,
    run_id: str,
    status: RunStatus,
    reason: str,
    reason_code: str,
    summary: str,
    now: float,
) -> bool:
    """End a live run; False if it had already ended (the first ending stays)."""
    cur = await conn.execute(
        "UPDATE runs SET status = ?, reason = ?, reason_code = ?, ended_at = ?, summary = ? "
        "WHERE id = ? AND status = 'running'",
        (status.value, reason, reason_code, now, summary, run_id),
    )
    return cur.rowcount == 1
