"""The outbox's rows, alerts' delivered messages and recipients' state, in the store.

core.alerting.outbox decides what goes in and what a row's next state is; these are its
statements. States and kinds are the values of core.alerting.outbox.OutboxState / OutboxKind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.store.conn import Conn, Row
from core.store.db import fetch_all, fetch_one

_COLUMNS = (
    "id, kind, chat, thread_id, company_id, alert_id, payload, state, created_at, due_at, "
    "attempts, message_id, error"
)
_SELECT = f"SELECT {_COLUMNS} FROM outbox"


async def insert(
    conn: Conn,
    kind: str,
    chat: str,
    thread_id: int | None,
    company_id: str | None,
    alert_id: int | None,
    payload: str,
    dedupe_key: str | None,
    now: float,
) -> int | None:
    """A pending row due now; None if a row with `dedupe_key` exists already."""
    found = await fetch_one(
        conn,
        "INSERT INTO outbox (kind, chat, thread_id, company_id, alert_id, payload, "
        "dedupe_key, state, created_at, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?) "
        "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        (kind, chat, thread_id, company_id, alert_id, payload, dedupe_key, now, now),
    )
    return None if found is None else int(found[0])


async def has_pending(conn: Conn, alert_id: int, chat: str, kinds: Sequence[str]) -> bool:
    marks = ",".join("?" for _ in kinds)
    row = await fetch_one(
        conn,
        f"SELECT 1 FROM outbox WHERE alert_id = ? AND chat = ? AND kind IN ({marks}) "
        "AND state = 'pending' LIMIT 1",
        (alert_id, chat, *kinds),
    )
    return row is not None


async def supersede_edits(conn: Conn, alert_id: int, chat: str) -> None:
    """Pending edits of the alert in `chat` are carried by a newer message."""
    await conn.execute(
        "UPDATE outbox SET state = 'superseded', error = 'a newer message carries it' "
        "WHERE alert_id = ? AND chat = ? AND kind = 'alert_edit' AND state = 'pending'",
        (alert_id, chat),
    )


async def has_message(conn: Conn, alert_id: int, chat: str, state: str | None = None) -> bool:
    """Was a new message for the alert put in the outbox for `chat` (and is it in `state`)?"""
    sql = "SELECT 1 FROM outbox WHERE alert_id = ? AND chat = ? AND kind = 'alert'"
    args: tuple[Any, ...] = (alert_id, chat)
    if state is not None:
        sql, args = sql + " AND state = ?", (*args, state)
    return await fetch_one(conn, sql + " LIMIT 1", args) is not None


async def alert_chats(conn: Conn, alert_id: int) -> list[tuple[str, int | None, str | None]]:
    """(chat, thread id, company id) of every chat a new message for the alert went to."""
    found = await fetch_all(
        conn,
        "SELECT DISTINCT chat, thread_id, company_id FROM outbox WHERE alert_id = ? "
        "AND kind = 'alert'",
        (alert_id,),
    )
    return [(r[0], r[1], r[2]) for r in found]


async def due(conn: Conn, now: float, limit: int) -> list[Row]:
    return await fetch_all(
        conn,
        f"{_SELECT} WHERE state = 'pending' AND due_at <= ? ORDER BY id LIMIT ?",
        (now, limit),
    )


async def next_due_at(conn: Conn) -> float | None:
    row = await fetch_one(conn, "SELECT min(due_at) FROM outbox WHERE state = 'pending'")
    return None if row is None or row[0] is None else float(row[0])


async def get(conn: Conn, row_id: int) -> Row | None:
    return await fetch_one(conn, f"{_SELECT} WHERE id = ?", (row_id,))


async def in_state(conn: Conn, state: str | None) -> list[Row]:
    """Every row (in `state`), oldest first."""
    sql = _SELECT
    args: tuple[str, ...] = ()
    if state is not None:
        sql, args = sql + " WHERE state = ?", (state,)
    return await fetch_all(conn, sql + " ORDER BY id", args)


async def counts(conn: Conn) -> dict[str, int]:
    found = await fetch_all(conn, "SELECT state, count(*) FROM outbox GROUP BY state")
    return {r[0]: r[1] for r in found}


async def pending_alerts(conn: Conn, now: float) -> list[Row]:
    """Pending new-alert messages that are due, oldest first (what a digest may carry)."""
    return await fetch_all(
        conn,
        f"{_SELECT} WHERE state = 'pending' AND kind = 'alert' AND due_at <= ? ORDER BY id",
        (now,),
    )


async def pending_digest(conn: Conn, chat: str, thread_id: int | None) -> Row | None:
    """The digest still waiting for this chat (and topic), if any."""
    return await fetch_one(
        conn,
        f"{_SELECT} WHERE state = 'pending' AND kind = 'alert_digest' AND chat = ? "
        "AND COALESCE(thread_id, 0) = COALESCE(?, 0) ORDER BY id DESC LIMIT 1",
        (chat, thread_id),
    )


async def set_payload(conn: Conn, row_id: int, payload: str) -> None:
    await conn.execute("UPDATE outbox SET payload = ? WHERE id = ?", (payload, row_id))


async def coalesce(conn: Conn, row_ids: Sequence[int], digest_id: int) -> None:
    """pending -> coalesced: these new-alert rows are carried by digest row `digest_id`."""
    marks = ",".join("?" for _ in row_ids)
    await conn.execute(
        f"UPDATE outbox SET state = 'coalesced', error = ? WHERE id IN ({marks}) "
        "AND state = 'pending'",
        (f"carried by digest row {digest_id}", *row_ids),
    )


async def sent_digest(conn: Conn, chat: str, message_id: int) -> Row | None:
    """The digest row whose message in `chat` (as configured) is `message_id`."""
    return await fetch_one(
        conn,
        f"{_SELECT} WHERE kind = 'alert_digest' AND state = 'sent' AND chat = ? "
        "AND message_id = ? ORDER BY id DESC LIMIT 1",
        (chat, message_id),
    )


async def start(conn: Conn, row_id: int, now: float) -> bool:
    """pending -> sending, counting the attempt; False if the row was not pending."""
    cur = await conn.execute(
        "UPDATE outbox SET state = 'sending', attempts = attempts + 1, started_at = ? "
        "WHERE id = ? AND state = 'pending'",
        (now, row_id),
    )
    return cur.rowcount == 1


async def sent(
    conn: Conn, row_id: int, message_id: int | None, now: float
) -> tuple[str, int | None, str, str] | None:
    """sending -> sent; returns the row's (kind, alert id, chat, payload), None if there is
    no row."""
    await conn.execute(
        "UPDATE outbox SET state = 'sent', sent_at = ?, message_id = COALESCE(?, "
        "message_id), error = '' WHERE id = ? AND state = 'sending'",
        (now, message_id, row_id),
    )
    row = await fetch_one(
        conn, "SELECT kind, alert_id, chat, payload FROM outbox WHERE id = ?", (row_id,)
    )
    return None if row is None else (row[0], row[1], row[2], row[3])


async def retry_at(conn: Conn, row_id: int, due_at: float, error: str) -> bool:
    """sending -> pending, due again at `due_at`."""
    cur = await conn.execute(
        "UPDATE outbox SET state = 'pending', due_at = ?, error = ? "
        "WHERE id = ? AND state = 'sending'",
        (due_at, error, row_id),
    )
    return cur.rowcount == 1


async def set_state(conn: Conn, row_id: int, state: str, error: str) -> bool:
    """Any state -> `state` (dead, superseded, or back after a crash), with why."""
    cur = await conn.execute(
        "UPDATE outbox SET state = ?, error = ? WHERE id = ?", (state, error, row_id)
    )
    return cur.rowcount == 1


async def record_delivery(
    conn: Conn, alert_id: int, chat: str, message_id: int, now: float
) -> None:
    await conn.execute(
        "INSERT INTO deliveries (alert_id, chat, message_id, sent_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (alert_id, chat) DO UPDATE SET message_id = excluded.message_id, "
        "sent_at = excluded.sent_at",
        (alert_id, chat, message_id, now),
    )


async def delivery(conn: Conn, alert_id: int, chat: str) -> int | None:
    row = await fetch_one(
        conn, "SELECT message_id FROM deliveries WHERE alert_id = ? AND chat = ?", (alert_id, chat)
    )
    return None if row is None or row[0] is None else int(row[0])


async def forget_delivery(conn: Conn, alert_id: int, chat: str) -> None:
    await conn.execute("DELETE FROM deliveries WHERE alert_id = ? AND chat = ?", (alert_id, chat))


async def migrated_to(conn: Conn, chat: str) -> str | None:
    row = await fetch_one(conn, "SELECT migrated_to FROM recipients WHERE chat = ?", (chat,))
    return None if row is None or row[0] is None else str(row[0])


async def migrate(conn: Conn, old: str, new: str) -> None:
    await conn.execute(
        "INSERT INTO recipients (chat, migrated_to) VALUES (?, ?) "
        "ON CONFLICT (chat) DO UPDATE SET migrated_to = excluded.migrated_to",
        (old, new),
    )


async def mark_undeliverable(conn: Conn, chat: str, now: float, reason: str) -> None:
    await conn.execute(
        "INSERT INTO recipients (chat, undeliverable_at, reason) VALUES (?, ?, ?) "
        "ON CONFLICT (chat) DO UPDATE SET undeliverable_at = excluded.undeliverable_at, "
        "reason = excluded.reason",
        (chat, now, reason),
    )


async def mark_deliverable(conn: Conn, chat: str) -> None:
    await conn.execute(
        "UPDATE recipients SET undeliverable_at = NULL, reason = '' WHERE chat = ?", (chat,)
    )


async def undeliverable_since(conn: Conn, chat: str) -> float | None:
    row = await fetch_one(conn, "SELECT undeliverable_at FROM recipients WHERE chat = ?", (chat,))
    return None if row is None or row[0] is None else float(row[0])
