"""The notifier: drains the core's outbox to Telegram, once per message from the reader's side.

Owners get alerts by DM (chat id = user id); each company's chat (and forum topic) gets its own
company's alerts and summaries. A new alert is a message with buttons; later changes edit that
message in place (a "message is not modified" answer counts as done); a resolved alert is edited
into its resolved form with the buttons removed. What agents wrote (summaries, reasons) and
any queued text has its secrets masked first (bot.redaction), as the logs do.

Telegram's answers, each handled where it applies:
- RetryAfter (429): the row and every send wait `retry_after` (a timedelta with
  PTB_TIMEDELTA=true, an int otherwise; both read without a deprecation warning).
- NetworkError / TimedOut / 5xx: retried with exponential backoff (1 s doubling to 1 min); the
  whole sender pauses meanwhile, since Telegram is unreachable for every row.
- Forbidden (bot blocked or removed): the recipient is marked undeliverable for an hour, the row
  is dropped and logged; it is never retried forever.
- ChatMigrated: the new supergroup id is remembered and used for this and every later message.
- An edit whose message is gone is sent as a new message instead.

Pacing. The notifier keeps Telegram's flood limits itself (30 messages a second, 20 a minute per
group) and sends through a bot without the Application's rate limiter. That limiter waits inside
the request, so a row sat `sending` for seconds behind a busy group chat and a crash then left
it in doubt and unsent (bench/crash_loop.py lost a message in most kills that way); and while it
waited, every other chat waited too. Now a row whose group is at its limit stays `pending` and
is skipped for this round; the other chats' rows go on.

Questions. A `question` alert goes out as the question's card (bot.views.questions): its choices
as buttons, answered by a tap or a reply; a reminder is a fresh card saying so, and the answer
edits every card into its answered form. Every new message that shows an issue (a summary, a
run's summary, a question card) is linked to it in the store, so a reply to it is talk to that
issue's agent (bot.handlers.replies).

Backlogs. At the start of each drain the outbox folds any chat's backlog of new-alert messages
(more than 3 waiting, the oldest for a minute: an outage, a flood) into one digest row
(core.alerting.outbox, "Backlogs"). A digest is rendered from its alerts' state when it is sent
(bot.views.alerts.render_digest), carries their fix buttons, and becomes the message that each
of its alerts' edits edit: as they resolve, the digest is edited, and says so when all have.

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
from typing import Any

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

from bot.pacing import Pacer, Pacing
from bot.redaction import scrub
from bot.views.alerts import (
    alert_keyboard,
    digest_keyboard,
    render_alert,
    render_digest,
    render_summary,
)
from bot.views.html import esc
from bot.views.questions import question_card
from core import (
    Alert,
    AlertBook,
    AlertKind,
    AlertNotFound,
    AlertState,
    Clock,
    Fleet,
    FleetbotError,
    FleetService,
    LeadershipLost,
    Outbox,
    OutboxKind,
    OutboxRow,
)

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0  # an outage costs one probe a minute; alerts resume within a minute
MAX_ROUNDS = 50  # batches per drain; the loop calls drain again right after
MAX_ATTEMPTS_UNKNOWN = 10  # for errors that are neither network nor flood control
NOTIFIER_KEY = "fleetbot.notifier"  # where start_notifier leaves the notifier in bot_data


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


@dataclass(frozen=True, slots=True)
class _Link:
    """What a sent message shows, so a reply to it reaches the right issue (or question)."""

    kind: str
    issue_id: str
    question_id: int | None = None


_Content = tuple[str, InlineKeyboardMarkup | None, _Link | None]


@dataclass
class DrainReport:
    sent: int = 0
    edited: int = 0
    retried: int = 0
    dropped: int = 0
    held_until: float | None = None
    paced: int = 0  # rows left for later: their group chat is at Telegram's limit
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
        pacing: Pacing | None = None,
        service: FleetService | None = None,
    ) -> None:
        self.bot = bot
        # Question alerts are sent as the question's card, and sent messages are linked to
        # what they show (replies talk to the agent); without it, alerts render as alerts.
        self.service = service
        self._pacer = Pacer(pacing) if pacing is not None else None
        self._paced: set[int] = set()  # this drain's rows left for their chat's limit
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
            paced = False
            try:
                paced = (await self.drain()).paced > 0
            except LeadershipLost as exc:  # stopped at once by the runner; until then, idle
                log.info("the notifier waits: %s", exc.message)
            except Exception:
                log.exception("the notifier's drain failed; retrying shortly")
            now = self.clock.now()
            wait = self.idle_poll
            next_due = await self.outbox.next_due_at()
            if next_due is not None:
                wait = min(wait, max(0.0, next_due - now))
            if paced and self._pacer is not None:
                # Due rows are waiting for a group's limit: look again when it has room (new
                # rows wake the loop anyway), not in a tight loop.
                wait = max(wait, self._pacer.retry_in)
            if self.hold_until > now:
                wait = max(wait, self.hold_until - now)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, wait))

    async def drain(self) -> DrainReport:
        """Send every due row, oldest first, until none is due or Telegram says wait."""
        report = DrainReport()
        self._paced.clear()
        if self.clock.now() >= self.hold_until:
            await self.outbox.coalesce()  # a backlog goes as one digest per chat
        # Bounded: a row that is due again at once (a migrated chat) must not spin forever.
        for _ in range(MAX_ROUNDS):
            if self.clock.now() < self.hold_until:
                break
            # Rows left for their chat's limit stay due: look past them, not at them again.
            found = await self.outbox.due(self.batch + len(self._paced))
            rows = [r for r in found if r.id not in self._paced]
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
        digest: OutboxRow | None = row if row.kind is OutboxKind.DIGEST else None
        if row.kind is OutboxKind.ALERT_EDIT:
            assert row.alert_id is not None
            if await self.outbox.has_pending_send(row.alert_id, row.chat):
                await self.outbox.superseded(row.id, "a new message still waiting carries it")
                return
            edit_of = await self.outbox.delivery(row.alert_id, chat)
            if edit_of is None and not await self.outbox.was_sent(row.alert_id, row.chat):
                await self.outbox.superseded(row.id, "no message of this alert there to edit")
                return
            if edit_of is not None:  # the alert's message there may be a digest of many
                digest = await self.outbox.sent_digest(row.chat, edit_of)
        if self._pacer is not None:
            if not self._pacer.ready(chat):
                report.paced += 1  # still pending; the other chats go on (see "Pacing")
                self._paced.add(row.id)
                return
            await self._pacer.take(chat)
        try:
            text, markup, link = await self._content(row, digest)
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
                if digest is not None:  # this edit showed every alert of the digest
                    await self.outbox.supersede_digest_edits(digest)
                report.edited += 1
            else:
                message_id = await self._send(chat, row.thread_id, text, markup)
                await self.outbox.sent(row.id, message_id, chat)
                report.sent += 1
                if link is not None:
                    await self._link(chat, message_id, link)
            self._network_failures = 0
        except TelegramError as exc:
            await self._failed(row, chat, exc, report)

    async def _content(self, row: OutboxRow, digest: OutboxRow | None = None) -> _Content:
        now = self.clock.now()
        if digest is not None:
            alerts = []
            for alert_id in digest.payload.get("alerts", []):
                with contextlib.suppress(AlertNotFound):
                    alerts.append(await self.alerts.get(int(alert_id)))
            if not alerts:
                raise AlertNotFound("the digest's alerts are gone")
            return render_digest(alerts, digest.company_id, now), digest_keyboard(alerts), None
        if row.kind in (OutboxKind.ALERT, OutboxKind.ALERT_EDIT):
            assert row.alert_id is not None
            alert = await self.alerts.get(row.alert_id)
            card = await self._question_card(alert, int(row.payload.get("seq", 1)))
            if card is not None:
                return card
            return render_alert(alert, row.company_id, now), alert_keyboard(alert), None
        if row.kind is OutboxKind.SUMMARY:
            summary = await self.outbox.summary(int(row.payload["summary_id"]))
            if summary is None:
                raise AlertNotFound("the summary is gone")
            issue_id = summary.get("issue_id")
            kind = "run" if summary.get("source") == "run" else "summary"
            return render_summary(summary), None, _Link(kind, issue_id) if issue_id else None
        # OutboxKind.TEXT, masked like summaries (bot.redaction): whatever queued it, no secret
        # leaves.
        text = scrub(str(row.payload["text"]))
        return (text if row.payload.get("html") else esc(text)), None, None

    async def _question_card(self, alert: Alert, seq: int) -> _Content | None:
        """A question alert is the question's card: choices as buttons while it is open, and
        Acknowledge (no more reminders) while it fires; a reminder says it is one."""
        if alert.kind is not AlertKind.QUESTION or self.service is None:
            return None
        qid = next((m.question_id for m in alert.members if m.question_id is not None), None)
        if qid is None:
            return None
        try:
            q = await self.service.question(qid)
        except FleetbotError:
            return None
        firing = alert.id if alert.state is AlertState.FIRING else None
        text, markup = await question_card(self.service, q, self.clock.now(), alert_id=firing)
        if seq > 1 and q.open:
            text = f"⏰ <b>Still waiting on you</b> (reminder {seq - 1})\n{text}"
        return text, markup, _Link("question", q.issue_id, q.id)

    async def _link(self, chat: str, message_id: int, link: _Link) -> None:
        if self.service is None:
            return
        try:
            await self.service.link_message(
                chat, message_id, link.kind, link.issue_id, link.question_id
            )
        except Exception:  # the message is out; only replies to it would miss their issue
            log.exception("could not record what message %s in %s shows", message_id, chat)

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
        if row.kind is OutboxKind.ALERT_EDIT and (
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
    bot = app.bot
    if getattr(bot, "rate_limiter", None) is not None:
        # The same token, URL and connection pool, minus the rate limiter (see "Pacing").
        base_url = bot.base_url
        bot = Bot(bot.token, base_url=lambda _token: base_url, request=bot.request)
    notifier = Notifier(
        bot, fleet.outbox, fleet.alerts, fleet.clock, pacing=Pacing(), service=fleet.service
    )
    bot_data = getattr(app, "bot_data", None)
    if isinstance(bot_data, dict):
        bot_data[NOTIFIER_KEY] = notifier  # for handlers and tests that need its state
    await notifier.start()
    return notifier.aclose
