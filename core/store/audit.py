"""The audit log: who did what to which target, with what result. Rows are only ever added."""

from __future__ import annotations

import json

from core.store.conn import Conn, Row
from core.store.db import fetch_all


async def record(
    conn: Conn,
    now: float,
    actor: str,
    action: str,
    target: str = "",
    detail: object = "",
    result: str = "ok",
) -> None:
    """One row, inside the caller's transaction; `detail` that is not text is stored as JSON."""
    text = detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True, default=str)
    await conn.execute(
        "INSERT INTO audit (at, actor, action, target, detail, result) VALUES (?, ?, ?, ?, ?, ?)",
        (now, actor, action, target, text, result),
    )


async def recent(conn: Conn, limit: int = 50) -> list[Row]:
    return await fetch_all(
        conn,
        "SELECT at, actor, action, target, detail, result FROM audit ORDER BY id DESC LIMIT ?",
        (limit,),
    )
