"""Routines in the store: what is due, what fired, and the config's routines kept in step."""

from __future__ import annotations

from core.models import Priority, Routine
from core.store import rows
from core.store.conn import Conn
from core.store.db import fetch_all, fetch_one

_SELECT = f"SELECT {rows.ROUTINE_COLUMNS} FROM routines"


async def get(conn: Conn, routine_id: int) -> Routine | None:
    row = await fetch_one(conn, f"{_SELECT} WHERE id = ?", (routine_id,))
    return None if row is None else rows.routine(row)


async def named(conn: Conn, name: str, company_id: str | None) -> list[Routine]:
    sql, args = f"{_SELECT} WHERE name = ?", [name]
    if company_id is not None:
        sql += " AND company_id = ?"
        args.append(company_id)
    return [rows.routine(r) for r in await fetch_all(conn, sql + " ORDER BY company_id", args)]


async def every(conn: Conn, company_id: str | None = None) -> list[Routine]:
    sql, args = _SELECT, []
    if company_id is not None:
        sql, args = f"{_SELECT} WHERE company_id = ?", [company_id]
    found = await fetch_all(conn, f"{sql} ORDER BY company_id, name", args)
    return [rows.routine(r) for r in found]


async def due(conn: Conn, now: float, limit: int = 500) -> list[Routine]:
    """Unpaused routines whose next due time has come, earliest first."""
    found = await fetch_all(
        conn,
        f"{_SELECT} WHERE paused = 0 AND next_at <= ? ORDER BY next_at LIMIT ?",
        (now, limit),
    )
    return [rows.routine(r) for r in found]


async def late(conn: Conn) -> list[Routine]:
    """Routines whose schedule slipped (the routine_missed monitor's input)."""
    found = await fetch_all(conn, f"{_SELECT} WHERE late != '' ORDER BY id")
    return [rows.routine(r) for r in found]


async def add(
    conn: Conn,
    *,
    company_id: str,
    name: str,
    assignee: str,
    schedule: str,
    timezone: str,
    title: str,
    body: str,
    priority: Priority,
    source: str,
    next_at: float,
    created_by: str,
    now: float,
) -> int:
    row = await fetch_one(
        conn,
        "INSERT INTO routines (company_id, name, assignee, schedule, timezone, title, body, "
        "priority, source, next_at, created_by, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            *(company_id, name, assignee, schedule, timezone, title, body),
            *(priority.rank, source, next_at, created_by, now),
        ),
    )
    assert row is not None
    return int(row[0])


async def update_definition(
    conn: Conn,
    routine_id: int,
    *,
    assignee: str,
    schedule: str,
    timezone: str,
    title: str,
    body: str,
    priority: Priority,
    next_at: float,
) -> None:
    """The config changed what the routine is (source becomes config); paused stays."""
    await conn.execute(
        "UPDATE routines SET assignee = ?, schedule = ?, timezone = ?, title = ?, body = ?, "
        "priority = ?, next_at = ?, source = 'config' WHERE id = ?",
        (assignee, schedule, timezone, title, body, priority.rank, next_at, routine_id),
    )


async def came_due(
    conn: Conn,
    routine_id: int,
    *,
    next_at: float,
    at: float,
    issue_id: str | None,
    skipped: int,
    missed: int,
    late: str,
) -> None:
    """A due time was handled: an instance filed (`issue_id`) or `skipped` due times skipped
    (the streak grows; a filed instance ends it), `missed` counted, `late` as it is now."""
    await conn.execute(
        "UPDATE routines SET next_at = ?, last_at = ?, "
        "last_issue = COALESCE(?, last_issue), skipped = skipped + ?, "
        "streak = CASE WHEN ? = 1 THEN streak + ? ELSE 0 END, missed = missed + ?, late = ? "
        "WHERE id = ?",
        (next_at, at, issue_id, skipped, int(issue_id is None), skipped, missed, late, routine_id),
    )


async def filed(conn: Conn, routine_id: int, issue_id: str) -> None:
    """An instance filed out of schedule (run now): the newest instance, no streak."""
    await conn.execute(
        "UPDATE routines SET last_issue = ?, streak = 0 WHERE id = ?", (issue_id, routine_id)
    )


async def set_late(conn: Conn, routine_id: int, late: str) -> None:
    await conn.execute("UPDATE routines SET late = ? WHERE id = ?", (late, routine_id))


async def set_paused(
    conn: Conn, routine_id: int, paused: bool, next_at: float | None = None
) -> None:
    await conn.execute(
        "UPDATE routines SET paused = ?, next_at = COALESCE(?, next_at), "
        "late = CASE WHEN ? = 1 THEN '' ELSE late END WHERE id = ?",
        (int(paused), next_at, int(paused), routine_id),
    )


async def delete(conn: Conn, routine_id: int) -> None:
    await conn.execute("DELETE FROM routines WHERE id = ?", (routine_id,))
