"""Message links: which issue (and question) a message the bot sent shows, by chat and message
id, so a reply to it can be told apart; and each chat's pinned "waiting on you" card."""

from __future__ import annotations

from core.models import MessageLink
from core.store import rows
from core.store.conn import Conn
from core.store.db import fetch_one

_SELECT = f"SELECT {rows.LINK_COLUMNS} FROM message_links"


async def record(
    conn: Conn,
    chat: str,
    message_id: int,
    kind: str,
    issue_id: str | None,
    question_id: int | None,
    now: float,
) -> None:
    """The message shows this issue (question); a message shown again is linked anew."""
    await conn.execute(
        "INSERT INTO message_links (chat, message_id, kind, issue_id, question_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (chat, message_id) DO UPDATE SET "
        "kind = excluded.kind, issue_id = excluded.issue_id, "
        "question_id = excluded.question_id, created_at = excluded.created_at",
        (chat, message_id, kind, issue_id, question_id, now),
    )


async def get(conn: Conn, chat: str, message_id: int) -> MessageLink | None:
    row = await fetch_one(conn, f"{_SELECT} WHERE chat = ? AND message_id = ?", (chat, message_id))
    return None if row is None else rows.link(row)


async def latest(conn: Conn, chat: str, kind: str) -> MessageLink | None:
    """The chat's newest message of `kind` (its pinned card)."""
    row = await fetch_one(
        conn,
        f"{_SELECT} WHERE chat = ? AND kind = ? ORDER BY created_at DESC LIMIT 1",
        (chat, kind),
    )
    return None if row is None else rows.link(row)


async def forget(conn: Conn, chat: str, message_id: int) -> None:
    await conn.execute(
        "DELETE FROM message_links WHERE chat = ? AND message_id = ?", (chat, message_id)
    )


async def prune(conn: Conn, before: float) -> int:
    """Forget links older than `before` (but never a pinned card): nobody replies to those."""
    cur = await conn.execute(
        "DELETE FROM message_links WHERE created_at < ? AND kind != 'pin'", (before,)
    )
    return cur.rowcount
