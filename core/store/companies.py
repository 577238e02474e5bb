"""Companies in the store (written only by core.store.sync, from the config)."""

from __future__ import annotations

from core.models import Company
from core.store import rows
from core.store.conn import Conn
from core.store.db import fetch_all, fetch_one

_SELECT = "SELECT id, name, prefix, chat FROM companies"


async def every(conn: Conn) -> list[Company]:
    return [rows.company(r) for r in await fetch_all(conn, f"{_SELECT} ORDER BY id")]


async def lookup(conn: Conn, key: str) -> Company | None:
    """The company whose id, or prefix in lower case, is `key` (already lower case)."""
    row = await fetch_one(conn, f"{_SELECT} WHERE id = ? OR lower(prefix) = ?", (key, key))
    return None if row is None else rows.company(row)
