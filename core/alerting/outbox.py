"""The durable outbox: every message fleetbot owes someone is a row in the store first.

Producers (alerts, summaries, anything with a dedupe key) enqueue rows; one sender (the bot's
notifier) drains them. A row is rendered when it is sent, from the alert's state at that moment,
so pending edits coalesce: one `alert_edit` row per alert and chat is ever waiting, and a pending
new message absorbs later edits.

Row lifecycle: `pending` -> `sending` (the attempt is recorded *before* the request) -> `sent`;
a failure puts it back to `pending` with a later `due_at`; `dead` when the recipient can never
get it (blocked the bot, chat gone); `superseded` when a newer row carries its content.
`reconcile()` runs when the sender starts: a row still `sending` was interrupted mid-attempt.
Edits are idempotent, so they go back to `pending`; a new message may or may not have reached
Telegram, which cannot be asked, so it becomes `in_doubt` and is *not* sent again (at most once:
a reader never sees a message twice because of a crash). For an alert, its next reminder sends
a fresh message to that chat, which later edits then target.

Sender API (the notifier):
    due(limit) -> list[OutboxRow]             pending rows whose due_at has come, oldest first
    start(row_id) -> bool                     pending -> sending; False if someone else has it
    sent(row_id, message_id=None, chat=None)  sending -> sent; records an alert's message id
    failed(row_id, error, retry_in)           sending -> pending, due again after retry_in s
    dead(row_id, error) / superseded(row_id, why)
    reconcile() -> list[OutboxRow]            at start: rows left `sending` by a crash
    delivery(alert_id, chat) -> int | None    the message to edit in that chat
    chat_for(chat) -> str                     follows group -> supergroup migrations
    migrate_chat(old, new) / mark_undeliverable(chat, reason) / mark_deliverable(chat)
    undeliverable(chat) -> bool
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from core.clock import Clock
from core.config import Config
from core.store.db import Database

log = logging.getLogger(__name__)

# A recipient that blocked the bot is skipped for this long, then tried again: people unblock.
UNDELIVERABLE_FOR = 3600.0


@dataclass(frozen=True, slots=True)
class Recipient:
    chat: str  # a Telegram chat id as text ("1001", "-100123…", "@channel")
    thread_id: int | None = None  # a forum topic
    company_id: str | None = None  # whose members it sees; None: everything (an owner)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    kind: str  # alert | alert_edit | summary | text
    chat: str
    thread_id: int | None
    company_id: str | None
    alert_id: int | None
    payload: dict[str, Any]
    state: str
    created_at: float
    due_at: float
    attempts: int
    message_id: int | None
    error: str

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.chat, self.thread_id, self.company_id)


_COLUMNS = (
    "id, kind, chat, thread_id, company_id, alert_id, payload, state, created_at, due_at, "
    "attempts, message_id, error"
)


def _row(r: Any) -> OutboxRow:
    return OutboxRow(
        id=r["id"],
        kind=r["kind"],
        chat=r["chat"],
        thread_id=r["thread_id"],
        company_id=r["company_id"],
        alert_id=r["alert_id"],
        payload=json.loads(r["payload"]),
        state=r["state"],
        created_at=r["created_at"],
        due_at=r["due_at"],
        attempts=r["attempts"],
        message_id=r["message_id"],
        error=r["error"],
    )


class Outbox:
    def __init__(self, db: Database, clock: Clock, config: Config) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self._listeners: list[Callable[[], None]] = []

    # -- routing --------------------------------------------------------------------------------

    def recipients_for_alert(self, company_ids: Iterable[str | None]) -> list[Recipient]:
        """Owners by DM get every alert; a company's chat gets its own company's."""
        wanted = set(company_ids)
        out = [Recipient(str(uid)) for uid in self.config.telegram.owners]
        for c in self.config.companies:
            if c.id in wanted and c.chat is not None:
                topic = c.topics.alerts if c.topics else None
                out.append(Recipient(str(c.chat), topic, c.id))
        return out

    def summary_recipient(self, company_id: str) -> Recipient | None:
        for c in self.config.companies:
            if c.id == company_id and c.chat is not None:
                return Recipient(str(c.chat), c.topics.summaries if c.topics else None, c.id)
        return None

    def on_enqueue(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after rows were added (the notifier wakes up)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    # -- producers ------------------------------------------------------------------------------

    async def enqueue_alert_in(
        self, conn: aiosqlite.Connection, alert_id: int, r: Recipient, now: float, seq: int
    ) -> int | None:
        """A new message for the alert (its first, or reminder `seq`) inside the caller's
        transaction. A new message still waiting there already carries the latest state."""
        if await self._pending(conn, alert_id, r.chat, "alert"):
            return None
        await conn.execute(
            "UPDATE outbox SET state = 'superseded', error = 'a newer message carries it' "
            "WHERE alert_id = ? AND chat = ? AND kind = 'alert_edit' AND state = 'pending'",
            (alert_id, r.chat),
        )
        return await self._insert(
            conn, "alert", r, now, alert_id, {"seq": seq}, f"alert:{alert_id}:{r.chat}:{seq}"
        )

    async def enqueue_edit_in(
        self,
        conn: aiosqlite.Connection,
        alert_id: int,
        r: Recipient,
        now: float,
        *,
        may_send: bool,
    ) -> int | None:
        """Edit the alert's message in this chat. Coalesces with waiting rows; a chat that never
        got the alert gets it as a new message instead when `may_send`."""
        if await self._pending(conn, alert_id, r.chat, "alert", "alert_edit"):
            return None
        async with conn.execute(
            "SELECT 1 FROM outbox WHERE alert_id = ? AND chat = ? AND kind = 'alert' LIMIT 1",
            (alert_id, r.chat),
        ) as cur:
            had_message = await cur.fetchone() is not None
        if had_message:
            return await self._insert(conn, "alert_edit", r, now, alert_id, {}, None)
        if may_send:
            return await self._insert(conn, "alert", r, now, alert_id, {"seq": 0}, None)
        return None

    async def alert_recipients_in(
        self, conn: aiosqlite.Connection, alert_id: int
    ) -> list[Recipient]:
        """Every chat the alert was put in the outbox for (where a resolution edit goes)."""
        async with conn.execute(
            "SELECT DISTINCT chat, thread_id, company_id FROM outbox WHERE alert_id = ? "
            "AND kind = 'alert'",
            (alert_id,),
        ) as cur:
            return [Recipient(r[0], r[1], r[2]) for r in await cur.fetchall()]

    async def enqueue_summary(self, summary_id: int, company_id: str) -> int | None:
        """Relay summary `summary_id` to its company's chat; repeating it adds nothing."""
        r = self.summary_recipient(company_id)
        if r is None:
            return None
        async with self.db.write() as conn:
            row_id = await self._insert(
                conn,
                "summary",
                r,
                self.clock.now(),
                None,
                {"summary_id": summary_id},
                f"summary:{summary_id}:{r.chat}",
            )
        self.notify()
        return row_id

    async def enqueue_text(
        self,
        chat: str | int,
        text: str,
        dedupe_key: str,
        *,
        thread_id: int | None = None,
        html: bool = False,
    ) -> int | None:
        """A plain message (digests, notices). The same `dedupe_key` is enqueued once only."""
        if not text.strip():
            raise ValueError("an outbox message needs text")
        async with self.db.write() as conn:
            row_id = await self._insert(
                conn,
                "text",
                Recipient(str(chat), thread_id),
                self.clock.now(),
                None,
                {"text": text, "html": html},
                dedupe_key,
            )
        self.notify()
        return row_id

    async def _pending(
        self, conn: aiosqlite.Connection, alert_id: int, chat: str, *kinds: str
    ) -> bool:
        marks = ",".join("?" for _ in kinds)
        async with conn.execute(
            f"SELECT 1 FROM outbox WHERE alert_id = ? AND chat = ? AND kind IN ({marks}) "
            "AND state = 'pending' LIMIT 1",
            (alert_id, chat, *kinds),
        ) as cur:
            return await cur.fetchone() is not None

    async def _insert(
        self,
        conn: aiosqlite.Connection,
        kind: str,
        r: Recipient,
        now: float,
        alert_id: int | None,
        payload: dict[str, Any],
        dedupe_key: str | None,
    ) -> int | None:
        cur = await conn.execute(
            "INSERT INTO outbox (kind, chat, thread_id, company_id, alert_id, payload, "
            "dedupe_key, state, created_at, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?) "
            "ON CONFLICT (dedupe_key) DO NOTHING",
            (
                *(kind, r.chat, r.thread_id, r.company_id, alert_id, json.dumps(payload)),
                *(dedupe_key, now, now),
            ),
        )
        return cur.lastrowid if cur.rowcount == 1 else None

    # -- the sender -----------------------------------------------------------------------------

    async def due(self, limit: int = 50) -> list[OutboxRow]:
        found = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' AND due_at <= ? "
            "ORDER BY id LIMIT ?",
            (self.clock.now(), limit),
        )
        return [_row(r) for r in found]

    async def next_due_at(self) -> float | None:
        value = await self.db.scalar("SELECT min(due_at) FROM outbox WHERE state = 'pending'")
        return None if value is None else float(value)

    async def get(self, row_id: int) -> OutboxRow | None:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (row_id,))
        return None if row is None else _row(row)

    async def rows(self, state: str | None = None) -> list[OutboxRow]:
        sql = f"SELECT {_COLUMNS} FROM outbox"
        args: tuple[str, ...] = ()
        if state is not None:
            sql += " WHERE state = ?"
            args = (state,)
        return [_row(r) for r in await self.db.fetchall(sql + " ORDER BY id", args)]

    async def start(self, row_id: int) -> bool:
        """Record the attempt before the request goes out (what `reconcile` looks for)."""
        return await self._move(
            row_id,
            "pending",
            "sending",
            "attempts = attempts + 1, started_at = ?",
            (self.clock.now(),),
        )

    async def sent(
        self, row_id: int, message_id: int | None = None, chat: str | None = None
    ) -> None:
        """Mark sent; for a new alert message also remember which message to edit later."""
        now = self.clock.now()
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE outbox SET state = 'sent', sent_at = ?, message_id = COALESCE(?, "
                "message_id), error = '' WHERE id = ? AND state = 'sending'",
                (now, message_id, row_id),
            )
            async with conn.execute(
                "SELECT kind, alert_id, chat FROM outbox WHERE id = ?", (row_id,)
            ) as cur:
                row = await cur.fetchone()
            if row is not None and row[1] is not None and message_id is not None:
                await conn.execute(
                    "INSERT INTO deliveries (alert_id, chat, message_id, sent_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (alert_id, chat) DO UPDATE SET "
                    "message_id = excluded.message_id, sent_at = excluded.sent_at",
                    (row[1], chat or row[2], message_id, now),
                )

    async def failed(self, row_id: int, error: str, retry_in: float) -> None:
        await self._move(
            row_id,
            "sending",
            "pending",
            "due_at = ?, error = ?",
            (self.clock.now() + max(0.0, retry_in), error[:500]),
        )

    async def dead(self, row_id: int, error: str) -> None:
        await self._move(row_id, None, "dead", "error = ?", (error[:500],))

    async def superseded(self, row_id: int, why: str) -> None:
        await self._move(row_id, None, "superseded", "error = ?", (why[:500],))

    async def _move(
        self, row_id: int, old: str | None, new: str, sets: str, args: tuple[Any, ...]
    ) -> bool:
        where = "id = ?" + ("" if old is None else " AND state = ?")
        params = (*args, row_id) + (() if old is None else (old,))
        async with self.db.write() as conn:
            cur = await conn.execute(
                f"UPDATE outbox SET state = '{new}', {sets} WHERE {where}", params
            )
        return cur.rowcount == 1

    async def reconcile(self) -> list[OutboxRow]:
        """After a crash: rows left `sending`. Edits retry (idempotent); new messages become
        `in_doubt` and are not sent again. Returns the in-doubt rows."""
        async with self.db.write() as conn:
            async with conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE state = 'sending'"
            ) as cur:
                stuck = [_row(r) for r in await cur.fetchall()]
            for row in stuck:
                state = "pending" if row.kind == "alert_edit" else "in_doubt"
                await conn.execute(
                    "UPDATE outbox SET state = ?, error = ? WHERE id = ?",
                    (state, "interrupted while sending", row.id),
                )
        doubtful = [r for r in stuck if r.kind != "alert_edit"]
        for r in doubtful:
            log.warning(
                "outbox row %d (%s to %s) was being sent when fleetbot stopped; it may or may "
                "not have arrived and is not sent again",
                r.id,
                r.kind,
                r.chat,
            )
        return doubtful

    async def delivery(self, alert_id: int, chat: str) -> int | None:
        value = await self.db.scalar(
            "SELECT message_id FROM deliveries WHERE alert_id = ? AND chat = ?", (alert_id, chat)
        )
        return None if value is None else int(value)

    async def forget_delivery(self, alert_id: int, chat: str) -> None:
        """The alert's message in `chat` can no longer be edited (deleted, chat migrated)."""
        async with self.db.write() as conn:
            await conn.execute(
                "DELETE FROM deliveries WHERE alert_id = ? AND chat = ?", (alert_id, chat)
            )

    async def was_sent(self, alert_id: int, chat: str) -> bool:
        """Did a new message for this alert certainly reach this chat (as configured)?"""
        value = await self.db.scalar(
            "SELECT 1 FROM outbox WHERE alert_id = ? AND chat = ? AND kind = 'alert' "
            "AND state = 'sent' LIMIT 1",
            (alert_id, chat),
        )
        return value is not None

    async def has_pending_send(self, alert_id: int, chat: str) -> bool:
        return await self._pending(self.db.reader, alert_id, chat, "alert")

    # -- recipients -----------------------------------------------------------------------------

    async def chat_for(self, chat: str) -> str:
        """The chat id to use now: a group that became a supergroup has a new id."""
        seen = {chat}
        while True:
            moved = await self.db.scalar(
                "SELECT migrated_to FROM recipients WHERE chat = ?", (chat,)
            )
            if moved is None or moved in seen:
                return chat
            seen.add(moved)
            chat = str(moved)

    async def migrate_chat(self, old: str, new: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                "INSERT INTO recipients (chat, migrated_to) VALUES (?, ?) "
                "ON CONFLICT (chat) DO UPDATE SET migrated_to = excluded.migrated_to",
                (old, new),
            )
        log.info("chat %s migrated to %s; messages go there from now on", old, new)

    async def mark_undeliverable(self, chat: str, reason: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                "INSERT INTO recipients (chat, undeliverable_at, reason) VALUES (?, ?, ?) "
                "ON CONFLICT (chat) DO UPDATE SET undeliverable_at = excluded.undeliverable_at, "
                "reason = excluded.reason",
                (chat, self.clock.now(), reason[:300]),
            )

    async def mark_deliverable(self, chat: str) -> None:
        """The recipient is reachable again (e.g. the user pressed Start)."""
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE recipients SET undeliverable_at = NULL, reason = '' WHERE chat = ?",
                (chat,),
            )

    async def undeliverable(self, chat: str) -> bool:
        since = await self.db.scalar(
            "SELECT undeliverable_at FROM recipients WHERE chat = ?", (chat,)
        )
        return since is not None and self.clock.now() - float(since) < UNDELIVERABLE_FOR

    async def counts(self) -> dict[str, int]:
        found = await self.db.fetchall("SELECT state, count(*) FROM outbox GROUP BY state")
        return {r[0]: r[1] for r in found}

    async def summary(self, summary_id: int) -> dict[str, Any] | None:
        """What a summary message shows: the agent's name and role, the issue, the text."""
        row = await self.db.fetchone(
            "SELECT s.body, s.issue_id, s.source, a.name, a.role, a.company_id FROM summaries s "
            "JOIN agents a ON a.id = s.agent_id WHERE s.id = ?",
            (summary_id,),
        )
        return None if row is None else dict(row)
