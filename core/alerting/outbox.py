"""The durable outbox: every message fleetbot owes someone is a row in the store first.

Producers (alerts, summaries, anything with a dedupe key) enqueue rows; one sender (the bot's
notifier) drains them. A row is rendered when it is sent, from the alert's state at that moment,
so pending edits coalesce: one `alert_edit` row per alert and chat is ever waiting, and a pending
new message absorbs later edits.

Row lifecycle: `pending` -> `sending` (the attempt is recorded *before* the request) -> `sent`;
a failure puts it back to `pending` with a later `due_at`; `dead` when the recipient can never
get it (blocked the bot, chat gone); `superseded` when a newer row carries its content;
`coalesced` when a digest row carries it (below).
`reconcile()` runs when the sender starts: a row still `sending` was interrupted mid-attempt.
Edits are idempotent, so they go back to `pending`; a new message may or may not have reached
Telegram, which cannot be asked, so it becomes `in_doubt` and is *not* sent again (at most once:
a reader never sees a message twice because of a crash). For an alert, its next reminder sends
a fresh message to that chat, which later edits then target.

Backlogs. After an outage (or a flood) a chat may have dozens of new-alert messages waiting;
sent one by one they trickle out at a group's 20 a minute for minutes, each a ping. `coalesce()`
folds them: when a chat (and topic) has more than COALESCE_AFTER new-alert rows due, the oldest
waiting at least BACKLOG_AGE, every one of them is marked `coalesced` (never deleted; `error`
names the digest) and one `alert_digest` row for that chat carries their alert ids (at most
MAX_DIGEST; more start another). Later rows for that chat join the digest while it waits. The
digest is one message; once sent, each alert's message in that chat *is* the digest, so the
alert's edits (a member joins, it resolves) edit the digest. The guarantee is unchanged: each
row produces at most one message (a coalesced row none; its digest one), and a row leaves
`pending` only for `sent`, `dead`, `superseded`, `in_doubt` or `coalesced` into a digest that is
itself a row with the same lifecycle. Alerts below the threshold, or not yet stale, go as
before.

Sender API (the notifier):
    due(limit) -> list[OutboxRow]             pending rows whose due_at has come, oldest first
    start(row_id) -> bool                     pending -> sending; False if someone else has it
    sent(row_id, message_id=None, chat=None)  sending -> sent; records an alert's message id
    failed(row_id, error, retry_in)           sending -> pending, due again after retry_in s
    dead(row_id, error) / superseded(row_id, why)
    coalesce() -> int                         fold each chat's backlog into a digest (above)
    sent_digest(chat, message_id)             the digest row behind a message, if it is one
    reconcile() -> list[OutboxRow]            at start: rows left `sending` by a crash
    delivery(alert_id, chat) -> int | None    the message to edit in that chat
    chat_for(chat) -> str                     follows group -> supergroup migrations
    migrate_chat(old, new) / mark_undeliverable(chat, reason) / mark_deliverable(chat)
    undeliverable(chat) -> bool
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.clock import Clock
from core.config import Config
from core.store import outbox as outbox_store, summaries
from core.store.conn import Conn
from core.store.db import Database

log = logging.getLogger(__name__)

# A recipient that blocked the bot is skipped for this long, then tried again: people unblock.
UNDELIVERABLE_FOR = 3600.0
COALESCE_AFTER = 3  # a chat with more new-alert messages than this waiting has a backlog...
BACKLOG_AGE = 60.0  # ...once the oldest waited this long (past the notifier's longest backoff)
MAX_DIGEST = 100  # alerts one digest message lists at most; more start another


class OutboxState(StrEnum):
    PENDING = "pending"  # waiting for its due_at (again, after a failed attempt)
    SENDING = "sending"  # an attempt is under way; recorded before the request goes out
    SENT = "sent"  # Telegram took it
    IN_DOUBT = "in_doubt"  # a new message interrupted mid-attempt: never sent again
    DEAD = "dead"  # the recipient can never get it (blocked the bot, chat gone)
    SUPERSEDED = "superseded"  # a newer row carries its content
    # A new-alert message folded into an `alert_digest` row for the same chat (a backlog);
    # the digest delivers it, `error` names the digest row.
    COALESCED = "coalesced"


class OutboxKind(StrEnum):
    ALERT = "alert"  # a new message for an alert (its first, or a reminder)
    ALERT_EDIT = "alert_edit"  # an edit of the alert's message in that chat
    DIGEST = "alert_digest"  # one message for a chat's backlog of alerts (payload: alert ids)
    SUMMARY = "summary"  # an agent's summary for its team chat
    TEXT = "text"  # a plain message: digests, notices


@dataclass(frozen=True, slots=True)
class Recipient:
    chat: str  # a Telegram chat id as text ("1001", "-100123…", "@channel")
    thread_id: int | None = None  # a forum topic
    company_id: str | None = None  # whose members it sees; None: everything (an owner)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    kind: OutboxKind
    chat: str
    thread_id: int | None
    company_id: str | None
    alert_id: int | None
    payload: dict[str, Any]
    state: OutboxState
    created_at: float
    due_at: float
    attempts: int
    message_id: int | None
    error: str

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.chat, self.thread_id, self.company_id)


def _row(r: Any) -> OutboxRow:
    return OutboxRow(
        id=r["id"],
        kind=OutboxKind(r["kind"]),
        chat=r["chat"],
        thread_id=r["thread_id"],
        company_id=r["company_id"],
        alert_id=r["alert_id"],
        payload=json.loads(r["payload"]),
        state=OutboxState(r["state"]),
        created_at=r["created_at"],
        due_at=r["due_at"],
        attempts=r["attempts"],
        message_id=r["message_id"],
        error=r["error"],
    )


def backlogs(
    rows: Sequence[OutboxRow],
    now: float,
    joining: Collection[tuple[str, int | None]] = (),
    *,
    after: int = COALESCE_AFTER,
    age: float = BACKLOG_AGE,
) -> list[list[OutboxRow]]:
    """The pending new-alert rows to fold, one list per chat and topic, oldest first: where
    more than `after` wait and the oldest waited `age` seconds, or a digest is `joining`."""
    by_chat: dict[tuple[str, int | None], list[OutboxRow]] = {}
    for row in sorted(rows, key=lambda r: r.id):
        if row.kind is OutboxKind.ALERT and row.state is OutboxState.PENDING:
            by_chat.setdefault((row.chat, row.thread_id), []).append(row)
    return [
        group
        for key, group in by_chat.items()
        if key in joining or (len(group) > after and now - min(r.created_at for r in group) >= age)
    ]


class Outbox:
    def __init__(self, db: Database, clock: Clock, config: Config) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self._listeners: list[Callable[[], None]] = []
        # The leader's fence (core.cluster.leadership.fenced) once `fleetbot run` has one.
        self.fence: Callable[[], AbstractContextManager[None]] = nullcontext

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
        self, conn: Conn, alert_id: int, r: Recipient, now: float, seq: int
    ) -> int | None:
        """A new message for the alert (its first, or reminder `seq`) inside the caller's
        transaction. A new message still waiting there already carries the latest state."""
        if await outbox_store.has_pending(conn, alert_id, r.chat, [OutboxKind.ALERT]):
            return None
        await outbox_store.supersede_edits(conn, alert_id, r.chat)
        return await self._insert(
            conn,
            OutboxKind.ALERT,
            r,
            now,
            alert_id,
            {"seq": seq},
            f"alert:{alert_id}:{r.chat}:{seq}",
        )

    async def enqueue_edit_in(
        self,
        conn: Conn,
        alert_id: int,
        r: Recipient,
        now: float,
        *,
        may_send: bool,
    ) -> int | None:
        """Edit the alert's message in this chat. Coalesces with waiting rows; a chat that never
        got the alert gets it as a new message instead when `may_send`."""
        waiting = [OutboxKind.ALERT, OutboxKind.ALERT_EDIT]
        if await outbox_store.has_pending(conn, alert_id, r.chat, waiting):
            return None
        if await outbox_store.has_message(conn, alert_id, r.chat):
            return await self._insert(conn, OutboxKind.ALERT_EDIT, r, now, alert_id, {}, None)
        if may_send:
            return await self._insert(conn, OutboxKind.ALERT, r, now, alert_id, {"seq": 0}, None)
        return None

    async def alert_recipients_in(self, conn: Conn, alert_id: int) -> list[Recipient]:
        """Every chat the alert was put in the outbox for (where a resolution edit goes)."""
        return [Recipient(*r) for r in await outbox_store.alert_chats(conn, alert_id)]

    async def enqueue_summary(self, summary_id: int, company_id: str) -> int | None:
        """Relay summary `summary_id` to its company's chat; repeating it adds nothing."""
        r = self.summary_recipient(company_id)
        if r is None:
            return None
        async with self.db.write() as conn:
            row_id = await self._insert(
                conn,
                OutboxKind.SUMMARY,
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
                OutboxKind.TEXT,
                Recipient(str(chat), thread_id),
                self.clock.now(),
                None,
                {"text": text, "html": html},
                dedupe_key,
            )
        self.notify()
        return row_id

    async def _insert(
        self,
        conn: Conn,
        kind: OutboxKind,
        r: Recipient,
        now: float,
        alert_id: int | None,
        payload: dict[str, Any],
        dedupe_key: str | None,
    ) -> int | None:
        return await outbox_store.insert(
            conn,
            kind,
            r.chat,
            r.thread_id,
            r.company_id,
            alert_id,
            json.dumps(payload),
            dedupe_key,
            now,
        )

    # -- the sender -----------------------------------------------------------------------------

    async def due(self, limit: int = 50) -> list[OutboxRow]:
        """Pending rows whose due_at has come, oldest first."""
        return [_row(r) for r in await outbox_store.due(self.db.reader, self.clock.now(), limit)]

    async def next_due_at(self) -> float | None:
        return await outbox_store.next_due_at(self.db.reader)

    async def get(self, row_id: int) -> OutboxRow | None:
        row = await outbox_store.get(self.db.reader, row_id)
        return None if row is None else _row(row)

    async def rows(self, state: OutboxState | None = None) -> list[OutboxRow]:
        return [_row(r) for r in await outbox_store.in_state(self.db.reader, state)]

    async def start(self, row_id: int) -> bool:
        """Record the attempt before the request goes out (what `reconcile` looks for). Only
        the leader sends: fenced, so a replica that lost the lease starts no more sends."""
        with self.fence():
            return await self._start(row_id)

    async def _start(self, row_id: int) -> bool:
        async with self.db.write() as conn:
            return await outbox_store.start(conn, row_id, self.clock.now())

    async def sent(
        self, row_id: int, message_id: int | None = None, chat: str | None = None
    ) -> None:
        """Mark sent; for a new alert message also remember which message to edit later."""
        now = self.clock.now()
        async with self.db.write() as conn:
            row = await outbox_store.sent(conn, row_id, message_id, now)
            if row is None or message_id is None:
                return
            # A digest is the message of every alert it lists: their edits go to it.
            carried = [row[1]] if row[1] is not None else []
            if row[0] == OutboxKind.DIGEST:
                carried = [int(a) for a in json.loads(row[3]).get("alerts", [])]
            for alert_id in carried:
                await outbox_store.record_delivery(conn, alert_id, chat or row[2], message_id, now)

    async def failed(self, row_id: int, error: str, retry_in: float) -> None:
        due_at = self.clock.now() + max(0.0, retry_in)
        async with self.db.write() as conn:
            await outbox_store.retry_at(conn, row_id, due_at, error[:500])

    async def dead(self, row_id: int, error: str) -> None:
        async with self.db.write() as conn:
            await outbox_store.set_state(conn, row_id, OutboxState.DEAD, error[:500])

    async def superseded(self, row_id: int, why: str) -> None:
        async with self.db.write() as conn:
            await outbox_store.set_state(conn, row_id, OutboxState.SUPERSEDED, why[:500])

    async def coalesce(self) -> int:
        """Fold each chat's backlog of new-alert rows into one digest row (see "Backlogs");
        returns how many rows were folded."""
        now = self.clock.now()
        folded = 0
        if not await outbox_store.pending_alerts(self.db.reader, now):
            return 0  # the usual case, without taking the write lock
        async with self.db.write() as conn:
            rows = [_row(r) for r in await outbox_store.pending_alerts(conn, now)]
            waiting: dict[tuple[str, int | None], OutboxRow] = {}
            for chat, thread_id in {(r.chat, r.thread_id) for r in rows}:
                found = await outbox_store.pending_digest(conn, chat, thread_id)
                if found is not None:
                    waiting[(chat, thread_id)] = _row(found)
            for group in backlogs(rows, now, set(waiting)):
                digest = waiting.get((group[0].chat, group[0].thread_id))
                folded += await self._fold(conn, group, digest, now)
        if folded:
            log.info("folded %d waiting alert messages into digests", folded)
        return folded

    async def _fold(
        self,
        conn: Conn,
        group: list[OutboxRow],
        digest: OutboxRow | None,
        now: float,
    ) -> int:
        digest_id = None if digest is None else digest.id
        ids: list[int] = [] if digest is None else list(digest.payload.get("alerts", []))
        for start in range(0, len(group), MAX_DIGEST):
            chunk = group[start : start + MAX_DIGEST]
            if digest_id is None or len(ids) + len(chunk) > MAX_DIGEST:
                digest_id = await self._insert(
                    conn, OutboxKind.DIGEST, chunk[0].recipient, now, None, {"alerts": []}, None
                )
                assert digest_id is not None  # no dedupe key: always inserted
                ids = []
            ids += [r.alert_id for r in chunk if r.alert_id is not None and r.alert_id not in ids]
            await outbox_store.set_payload(conn, digest_id, json.dumps({"alerts": ids}))
            await outbox_store.coalesce(conn, [r.id for r in chunk], digest_id)
        return len(group)

    async def sent_digest(self, chat: str, message_id: int) -> OutboxRow | None:
        """The digest row whose message in `chat` (as configured) is `message_id`, if any."""
        row = await outbox_store.sent_digest(self.db.reader, chat, message_id)
        return None if row is None else _row(row)

    async def supersede_digest_edits(self, digest: OutboxRow) -> None:
        """The digest was just edited: other waiting edits of its alerts there are done too."""
        async with self.db.write() as conn:
            for alert_id in digest.payload.get("alerts", []):
                await outbox_store.supersede_edits(conn, int(alert_id), digest.chat)

    async def reconcile(self) -> list[OutboxRow]:
        """After a crash: rows left `sending`. Edits retry (idempotent); new messages become
        `in_doubt` and are not sent again. Returns the in-doubt rows."""
        async with self.db.write() as conn:
            stuck = [_row(r) for r in await outbox_store.in_state(conn, OutboxState.SENDING)]
            for row in stuck:
                edit = row.kind is OutboxKind.ALERT_EDIT
                state = OutboxState.PENDING if edit else OutboxState.IN_DOUBT
                await outbox_store.set_state(conn, row.id, state, "interrupted while sending")
        doubtful = [r for r in stuck if r.kind is not OutboxKind.ALERT_EDIT]
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
        return await outbox_store.delivery(self.db.reader, alert_id, chat)

    async def forget_delivery(self, alert_id: int, chat: str) -> None:
        """The alert's message in `chat` can no longer be edited (deleted, chat migrated)."""
        async with self.db.write() as conn:
            await outbox_store.forget_delivery(conn, alert_id, chat)

    async def was_sent(self, alert_id: int, chat: str) -> bool:
        """Did a new message for this alert certainly reach this chat (as configured)?"""
        return await outbox_store.has_message(self.db.reader, alert_id, chat, OutboxState.SENT)

    async def has_pending_send(self, alert_id: int, chat: str) -> bool:
        return await outbox_store.has_pending(self.db.reader, alert_id, chat, [OutboxKind.ALERT])

    # -- recipients -----------------------------------------------------------------------------

    async def chat_for(self, chat: str) -> str:
        """The chat id to use now: a group that became a supergroup has a new id."""
        seen = {chat}
        while True:
            moved = await outbox_store.migrated_to(self.db.reader, chat)
            if moved is None or moved in seen:
                return chat
            seen.add(moved)
            chat = moved

    async def migrate_chat(self, old: str, new: str) -> None:
        async with self.db.write() as conn:
            await outbox_store.migrate(conn, old, new)
        log.info("chat %s migrated to %s; messages go there from now on", old, new)

    async def mark_undeliverable(self, chat: str, reason: str) -> None:
        async with self.db.write() as conn:
            await outbox_store.mark_undeliverable(conn, chat, self.clock.now(), reason[:300])

    async def mark_deliverable(self, chat: str) -> None:
        """The recipient is reachable again (e.g. the user pressed Start)."""
        async with self.db.write() as conn:
            await outbox_store.mark_deliverable(conn, chat)

    async def undeliverable(self, chat: str) -> bool:
        since = await outbox_store.undeliverable_since(self.db.reader, chat)
        return since is not None and self.clock.now() - since < UNDELIVERABLE_FOR

    async def counts(self) -> dict[OutboxState, int]:
        found = await outbox_store.counts(self.db.reader)
        return {OutboxState(state): n for state, n in found.items()}

    async def summary(self, summary_id: int) -> dict[str, Any] | None:
        """What a summary message shows: the agent's name and role, the issue, the text."""
        return await summaries.shown(self.db.reader, summary_id)
