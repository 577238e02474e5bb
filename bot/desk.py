"""What every handler works with: the desk (fleet, access rules, alert book) and one call.

The desk is built once per Application and kept in `bot_data`; a Call is one command or button
press by one person, with their role already looked up. `Call.audited` is what every command,
press and form step is wrapped in: the audit row whatever happens, then the press's answer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from telegram import InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from bot.confirmations import Confirmations, Pending
from bot.redaction import scrub
from bot.roles import Access, Role
from bot.views import keyboards
from bot.views.html import clip, split_html
from core import AlertBook, Clock, Config, Fleet, FleetService

log = logging.getLogger(__name__)
DESK_KEY = "fleetbot.desk"
ANSWER_LIMIT = 200  # Telegram's limit on a callback answer's text
Context = ContextTypes.DEFAULT_TYPE


@dataclass
class Desk:
    fleet: Fleet
    access: Access
    # Seconds a guided /issue form waits for the next answer before it gives up.
    form_timeout: float = 600.0
    # The "are you sure?" prompts of bulk actions and routine removals waiting for their tap
    # (bot.confirmations).
    confirmations: Confirmations = field(default_factory=Confirmations)
    # Team chats that became supergroups: new chat id -> the id the config still names.
    migrated: dict[str, str] = field(default_factory=dict)

    @property
    def service(self) -> FleetService:
        return self.fleet.service

    @property
    def config(self) -> Config:
        return self.fleet.config

    @property
    def clock(self) -> Clock:
        return self.fleet.clock

    @property
    def alerts(self) -> AlertBook:
        return self.fleet.alerts

    def chat_company(self, chat_id: int | None) -> str | None:
        """The company whose team chat this is, if any: commands there default to it."""
        if chat_id is None:
            return None
        key = self.migrated.get(str(chat_id), str(chat_id))
        for c in self.config.companies:
            if c.chat is not None and str(c.chat) == key:
                return c.id
        return None

    async def learn_chat(self, chat_id: int) -> None:
        """A group the config does not name may be a team chat that became a supergroup
        (Telegram gives it a new id): if the outbox followed a team chat there, remember it."""
        key = str(chat_id)
        chats = [str(c.chat) for c in self.config.companies if c.chat is not None]
        if key in self.migrated or key in chats:
            return
        for chat in chats:
            if await self.fleet.outbox.chat_for(chat) == key:
                self.migrated[key] = chat
                return

    async def audit(
        self, user_id: int, action: str, target: str, result: str, detail: dict[str, Any]
    ) -> None:
        try:
            await self.service.audit(f"tg:{user_id}", action, scrub(target)[:200], detail, result)
        except Exception:  # an audit failure must not hide the answer the user already got
            log.exception("could not audit %s by tg:%s", action, user_id)


def desk_of(context: Context) -> Desk:
    desk = context.bot_data.get(DESK_KEY)
    if not isinstance(desk, Desk):
        raise RuntimeError("the Application was not built by bot.app.build_application")
    return desk


@dataclass
class Outcome:
    """What a command or press came to: its audit row, and the answer to a press."""

    action: str
    target: str
    result: str = "ok"
    answer: str = ""  # a press's answer: a toast, or a dialog when `alert`
    alert: bool = False

    def decline(self, result: str, why: str) -> None:
        """Nothing was done (refused, stale, an error): record `result`, show `why` as a dialog."""
        self.result, self.answer, self.alert = result, why, True


@dataclass
class Call:
    """One command or button press: who, where, with which arguments."""

    desk: Desk
    update: Update
    context: Context
    user_id: int
    role: Role
    rest: str = ""  # the command's arguments as typed
    notes: list[str] = field(default_factory=list)  # what happened, for the audit row

    @classmethod
    def of(cls, update: Update, context: Context, user_id: int, rest: str = "") -> Call:
        """A call by `user_id`, with their role looked up now."""
        desk = desk_of(context)
        return cls(desk, update, context, user_id, desk.access.role(user_id), rest)

    @asynccontextmanager
    async def audited(self, action: str, target: str, **detail: object) -> AsyncIterator[Outcome]:
        """Audit what the body comes to, then answer the press if this is one (after the row is
        written, so whoever sees the answer can rely on it). An exception that escapes is
        audited as `crashed` and not answered: the error handler tells the user."""
        outcome = Outcome(action, target)
        try:
            yield outcome
        except Exception:
            outcome.result = "crashed"
            raise
        finally:
            row: dict[str, Any] = {"chat": self.chat_id, "role": self.role.label, **detail}
            if self.notes:
                row["did"] = "; ".join(self.notes)
            await self.desk.audit(self.user_id, outcome.action, outcome.target, outcome.result, row)
            query = self.update.callback_query
            if query is not None and outcome.result != "crashed":
                answer = clip(outcome.answer, ANSWER_LIMIT) if outcome.answer else None
                await query.answer(answer, show_alert=outcome.alert)

    @property
    def actor(self) -> str:
        return f"tg:{self.user_id}"

    @property
    def service(self) -> FleetService:
        return self.desk.service

    @property
    def now(self) -> float:
        return self.desk.clock.now()

    @property
    def chat_id(self) -> int | None:
        chat = self.update.effective_chat
        return None if chat is None else chat.id

    def note(self, text: str) -> None:
        self.notes.append(text)

    def confirm(self, action: str, *, subject: str = "", scope: str = "") -> Pending:
        """Ask to confirm `action` (on `subject`), as this person in this chat."""
        return self.desk.confirmations.ask(
            action, self.user_id, self.chat_id or 0, self.now, subject=subject, scope=scope
        )

    def confirm_keyboard(self, action: str, yes: str) -> InlineKeyboardMarkup:
        """A "yes" and a "cancel" for a bulk action, asked by this person in this chat; the
        buttons carry only the id of the confirmation the desk keeps (bot.confirmations)."""
        return keyboards.confirm_keyboard(self.confirm(action).id, yes)

    async def reply(
        self, text: str, keyboard: InlineKeyboardMarkup | None = None
    ) -> Message | None:
        """Send HTML, split under Telegram's limit; the keyboard goes on the last part."""
        return await send_html(self.update, text, keyboard)


async def send_html(
    update: Update, text: str, keyboard: InlineKeyboardMarkup | None = None
) -> Message | None:
    message = update.effective_message
    chat = update.effective_chat
    parts = split_html(text) or ["(nothing to show)"]
    sent: Message | None = None
    for k, part in enumerate(parts):
        markup = keyboard if k == len(parts) - 1 else None
        if message is not None and update.callback_query is None:
            sent = await message.reply_text(part, parse_mode=ParseMode.HTML, reply_markup=markup)
        elif chat is not None:
            thread = message.message_thread_id if message is not None else None
            sent = await chat.send_message(
                part,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
                message_thread_id=thread
                if message is not None and message.is_topic_message
                else None,
            )
    return sent


async def edit_html(
    update: Update, text: str, keyboard: InlineKeyboardMarkup | None = None
) -> None:
    """Replace the pressed message's text and keyboard; unchanged content is not an error."""
    query = update.callback_query
    if query is None:
        return
    parts: Sequence[str] = split_html(text) or ["(nothing to show)"]
    try:
        await query.edit_message_text(parts[0], parse_mode=ParseMode.HTML, reply_markup=keyboard)
    except BadRequest as exc:
        if "not modified" not in exc.message.lower():
            raise
