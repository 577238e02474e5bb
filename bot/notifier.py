"""The notifier: drains the core's outbox to Telegram, once per message from the reader's side.

Owners get alerts by DM (chat id = user id); each company's chat (and forum topic) gets its own
company's alerts and summaries. A new alert is a message with buttons; later changes edit that
message in place (a "message is not modified" answer counts as done); a resolved alert is edited
into its resolved form with the buttons removed.

Telegram's answers, each handled where it applies:
- RetryAfter (429): the row and every send wait `retry_after` (a timedelta with
  PTB_TIMEDELTA=true, an int otherwise; both read without a deprecation warning).
- NetworkError / TimedOut / 5xx: retried with exponential backoff (1 s doubling to 1 min); the
  whole sender pauses meanwhile, since Telegram is unreachable for every row.
- Forbidden (bot blocked or removed): the recipient is marked undeliverable for an hour, the row
  is dropped and logged; it is never retried forever.
- ChatMigrated: the new supergroup id is remembered and used for this and every later message.
- An edit whose message is gone is sent as a new message instead.

Guarantee. Each outbox row produces at most one Telegram message, and rows are delivered in
order of creation unless a retry delays one. The attempt is recorded (`sending`) before the
request; the message id is recorded (`sent`) right after the answer. If fleetbot dies between
the two, the restart finds the row `sending`: an edit is simply redone (edits are idempotent);
a new message is marked `in_doubt` and not sent again, because Telegram cannot be asked whether
it arrived, and a duplicate alert is what this exists to prevent. The one loss this allows (the
process dying after recording the attempt but before Telegram got the request) is made good for
a firing alert by its next reminder. A network timeout on a live process is retried, since PTB
cannot tell a lost request from a lost answer; that is the one place a duplicate can occur.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from telegram import Bot, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBDeprecationWarning

from bot.alert_view import alert_keyboard, esc, render_alert, render_summary
from core.alerts import AlertBook
from core.clock import Clock
from core.errors import AlertNotFound
from core.outbox import Outbox, OutboxRow

if TYPE_CHECKING:
    from core.fleet import Fleet

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0  # an outage costs one probe a minute; alerts resume within a minute
MAX_ROUNDS = 50  # batches per drain; the loop calls drain again right after
MAX_ATTEMPTS_UNKNOWN = 10  # for errors that are neither network nor flood control


def retry_after_seconds(exc: RetryAfter) -> float:
    """RetryAfter.retry_after in seconds, whichever type PTB hands out, without warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = exc.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def backoff(attempts: int) -> float:
    return float(min(MAX_BACKOFF, 2.0 ** max(0, attempts - 1)))


def _chat_id(chat: str) -> int | str:
    return int(chat) if chat.lstrip("-").isdigit() else chat


@dataclass
class DrainReport:
    sent: int = 0
    edited: int = 0
    retried: int = 0
    dropped: int = 0
    held_until: float | None = None
    errors: list[str] = field(default_factory=list)


class _Hold(Exception):
    """Stop this drain: Telegram asked us to wait, or is unreachable."""


class Notifier:
    """`async with Notifier(bot, outbox, alerts, clock):` runs the drain loop in the background;
    tests call `reconcile()` and `drain()` themselves with a hand-wound clock."""

    def __init__(
        self,
        bot: Bot,
        outbox: Outbox,
        alerts: AlertBook,
        clock: Clock,
        *,
        batch: int = 30,
        idle_poll: float = 5.0,
    ) -> None:
        self.bot = bot
        self.outbox = outbox
        self.alerts = alerts
        self.clock = clock
        self.batch = batch
        self.idle_poll = idle_poll
        self.hold_until = 0.0
        self._network_failures = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def __aenter__(self) -> Notifier:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        await self.reconcile()
        self._unsubscribe = self.outbox.on_enqueue(self.wake)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="notifier")

    async def aclose(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def reconcile(self) -> int:
        """Settle rows a previous process left mid-send (see the module's guarantee)."""
        return len(await self.outbox.reconcile())

    async def _loop(self) -> None:
        while True:
            try:
                await self.drain()
            except Exception:
                log.exception("the notifier's drain failed; retrying shortly")
            now = self.clock.now()
            wait = self.idle_poll
            next_due = await self.outbox.next_due_at()
            if next_due is not None:
                wait = min(wait, max(0.0, next_due - now))
            if self.hold_until > now:
                wait = max(wait, self.hold_until - now)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, wait))

    async def drain(self) -> DrainReport:
        """Send every due row, oldest first, until none is due or Telegram says wait."""
        report = DrainReport()
        # Bounded: a row that is due again at once (a migrated chat) must not spin forever.
        for _ in range(MAX_ROUNDS):
            if self.clock.now() < self.hold_until:
                break
            rows = await self.outbox.due(self.batch)
            if not rows:
                break
            try:
                for row in rows:
                    await self._deliver(row, report)
            except _Hold:
                break
        if self.hold_until > self.clock.now():
            report.held_until = self.hold_until
        return report

    async def _deliver(self, row: OutboxRow, report: DrainReport) -> None:
        chat = await self.outbox.chat_for(row.chat)
        if await self.outbox.undeliverable(chat):
            await self.outbox.dead(row.id, "the recipient blocked the bot or removed it")
            report.dropped += 1
            return
        edit_of: int | None = None
        if row.kind == "alert_edit":
            assert row.alert_id is not None
            if await self.outbox.has_pending_send(row.alert_id, row.chat):
                await self.outbox.superseded(row.id, "a new message still waiting carries it")
                return
            edit_of = await self.outbox.delivery(row.alert_id, chat)
            if edit_of is None and not await self.outbox.was_sent(row.alert_id, row.chat):
                await self.outbox.superseded(row.id, "no message of this alert there to edit")
                return
        try:
            text, markup = await self._content(row)
        except AlertNotFound:
            await self.outbox.dead(row.id, "the alert no longer exists")
            report.dropped += 1
            return
        if not await self.outbox.start(row.id):
            return  # another sender took it
        try:
            if edit_of is not None:
                await self._edit(chat, edit_of, text, markup)
                await self.outbox.sent(row.id)
                report.edited += 1
            else:
                message_id = await self._send(chat, row.thread_id, text, markup)
                await self.outbox.sent(row.id, message_id, chat)
                report.sent += 1
            self._network_failures = 0
        except TelegramError as exc:
            await self._failed(row, chat, exc, report)

    async def _content(self, row: OutboxRow) -> tuple[str, InlineKeyboardMarkup | None]:
        now = self.clock.now()
        if row.kind in ("alert", "alert_edit"):
            assert row.alert_id is not None
            alert = await self.alerts.get(row.alert_id)
            return render_alert(alert, row.company_id, now), alert_keyboard(alert)
        if row.kind == "summary":
            summary = await self.outbox.summary(int(row.payload["summary_id"]))
            if summary is None:
                raise AlertNotFound("the summary is gone")
            return render_summary(summary), None
        text = str(row.payload["text"])
        return (text if row.payload.get("html") else esc(text)), None

    async def _send(
        self, chat: str, thread_id: int | None, text: str, markup: InlineKeyboardMarkup | None
    ) -> int:
        try:
            message = await self.bot.send_message(
                _chat_id(chat),
                text,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
                message_thread_id=thread_id,
            )
        except BadRequest as exc:
            if thread_id is None or "thread not found" not in exc.message.lower():
                raise
            # The topic was deleted: the chat itself is better than nowhere.
            log.warning("topic %s of chat %s is gone; sending to the chat itself", thread_id, chat)
            message = await self.bot.send_message(
                _chat_id(chat), text, parse_mode=ParseMode.HTML, reply_markup=markup
            )
        return message.message_id

    async def _edit(
        self, chat: str, message_id: int, text: str, markup: InlineKeyboardMarkup | None
    ) -> None:
        try:
            await self.bot.edit_message_text(
                text,
                chat_id=_chat_id(chat),
                message_id=message_id,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
            )
        except BadRequest as exc:
            if "message is not modified" not in exc.message.lower():
                raise  # the same content is already there: that is success

    async def _failed(
        self, row: OutboxRow, chat: str, exc: TelegramError, report: DrainReport
    ) -> None:
        attempts = row.attempts + 1
        now = self.clock.now()
        if isinstance(exc, RetryAfter):
            wait = retry_after_seconds(exc)
            await self.outbox.failed(row.id, f"flood control: retry after {wait:g} s", wait)
            self.hold_until = max(self.hold_until, now + wait)
            report.retried += 1
            raise _Hold
        if isinstance(exc, ChatMigrated):
            await self.outbox.migrate_chat(chat, str(exc.new_chat_id))
            await self.outbox.failed(row.id, "chat migrated to a supergroup", 0.0)
            report.retried += 1
            return
        if isinstance(exc, Forbidden):
            log.warning("chat %s refuses the bot (%s); skipping it for now", chat, exc.message)
            await self.outbox.mark_undeliverable(chat, exc.message)
            await self.outbox.dead(row.id, exc.message)
            report.dropped += 1
            return
        if isinstance(exc, BadRequest):
            await self._bad_request(row, chat, exc, report)
            return
        if isinstance(exc, NetworkError):  # includes TimedOut and 5xx answers
            self._network_failures += 1
            wait = backoff(max(attempts, self._network_failures))
            await self.outbox.failed(row.id, f"network: {exc.message}", wait)
            self.hold_until = max(self.hold_until, now + wait)
            report.retried += 1
            raise _Hold
        if attempts >= MAX_ATTEMPTS_UNKNOWN:
            log.error("outbox row %d failed %d times (%s); giving up", row.id, attempts, exc)
            await self.outbox.dead(row.id, str(exc))
            report.dropped += 1
            return
        await self.outbox.failed(row.id, str(exc), backoff(attempts))
        report.retried += 1

    async def _bad_request(
        self, row: OutboxRow, chat: str, exc: BadRequest, report: DrainReport
    ) -> None:
        text = exc.message.lower()
        if row.kind == "alert_edit" and (
            "message to edit not found" in text or "can't be edited" in text
        ):
            # The message was deleted (or lives in a migrated chat): send it afresh.
            assert row.alert_id is not None
            await self.outbox.forget_delivery(row.alert_id, chat)
            await self.outbox.failed(row.id, "message to edit is gone; sending a new one", 0.0)
            report.retried += 1
            return
        if "chat not found" in text:
            log.error(
                "chat %s does not exist for the bot; check companies[].chat and that the bot is "
                "a member",
                chat,
            )
            await self.outbox.mark_undeliverable(chat, exc.message)
        else:
            log.error("Telegram refused outbox row %d (%s): %s", row.id, row.kind, exc.message)
        await self.outbox.dead(row.id, exc.message)
        report.dropped += 1


async def start_notifier(app: Any, fleet: Fleet) -> Callable[[], Awaitable[None]]:
    """Start draining `fleet.outbox` with the application's bot; returns its stop function."""
    notifier = Notifier(app.bot, fleet.outbox, fleet.alerts, fleet.clock)
    await notifier.start()
    return notifier.aclose
