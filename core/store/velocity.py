"""The spend-velocity breaker's queries: spend per agent in the last hour, against its history,
and the breaker's trips (core.queues.breaker)."""

from __future__ import annotations

from core.store.conn import Conn
from core.store.db import fetch_all, fetch_one

HOUR = 3600.0


async def last_hour(conn: Conn, now: float) -> list[tuple[str, float, int]]:
    """(agent id, cost, tokens) of runs started in the last hour, or still running (a long
    runaway run counts whole in the hour it is watched in). An index range on runs_started:
    the OR is inside the day's range, and `+agent_id` keeps the planner off runs_agent (a
    scan of every run: 559 ms against 0.6 ms at 600k runs, measured). `agent_id || ''` is
    that hint in SQL both engines speak (PostgreSQL has no unary + on text)."""
    found = await fetch_all(
        conn,
        "SELECT agent_id || '', sum(cost), sum(input_tokens + output_tokens) FROM runs "
        "WHERE started_at >= :day AND (started_at >= :hour OR status = 'running') "
        "GROUP BY 1",
        {"hour": now - HOUR, "day": now - 86400.0},
    )
    return [(r[0], float(r[1] or 0), int(r[2] or 0)) for r in found]


async def history(conn: Conn, agent_id: str, since: float, until: float) -> tuple[float, int, int]:
    """(cost, tokens, hours with a run) of the agent's runs started in [since, until)."""
    row = await fetch_one(
        conn,
        "SELECT coalesce(sum(cost), 0), coalesce(sum(input_tokens + output_tokens), 0), "
        "count(DISTINCT CAST(started_at / 3600 AS INTEGER)) FROM runs "
        "WHERE agent_id = ? AND started_at >= ? AND started_at < ?",
        (agent_id, since, until),
    )
    assert row is not None
    return float(row[0]), int(row[1]), int(row[2])


async def last_trip(conn: Conn, agent_id: str) -> float | None:
    row = await fetch_one(conn, "SELECT max(at) FROM breaker_trips WHERE agent_id = ?", (agent_id,))
    return None if row is None else row[0]


async def record_trip(
    conn: Conn,
    agent_id: str,
    at: float,
    cost: float,
    tokens: int,
    baseline_cost: float,
    paused: bool,
) -> None:
    await conn.execute(
        "INSERT INTO breaker_trips (agent_id, at, cost, tokens, baseline_cost, paused) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (agent_id, at, cost, tokens, baseline_cost, int(paused)),
    )


async def trips(conn: Conn, since: float) -> list[tuple[str, float, bool]]:
    found = await fetch_all(
        conn, "SELECT agent_id, at, paused FROM breaker_trips WHERE at >= ? ORDER BY at", (since,)
    )
    return [(r[0], r[1], bool(r[2])) for r in found]
