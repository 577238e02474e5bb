"""The python-telegram-bot Application: handlers, rate limiting, the error handler, the menu.

`build_application` wires every command and button to the desk; `register_commands` publishes
the command menu with setMyCommands. Starting and stopping is bot.runner's job, so the bot runs
in the same event loop as the core and the agent API.
"""

from __future__ import annotations

import contextlib
import html
import logging
from typing import Any

from telegram import BotCommand, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    BaseRateLimiter,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import BaseRequest

from bot.access import NEW_MESSAGES, refusal
from bot.desk import DESK_KEY, Desk, desk_of
from bot.handlers import agents, alerts, auth, issues, overview, questions, queues
from bot.handlers.buttons import on_button
from bot.handlers.guided import build_form_handler
from bot.handlers.replies import on_reply
from bot.redaction import scrub
from bot.roles import COMMANDS, Access, Role
from core import Fleet

log = logging.getLogger(__name__)
App = Application[Any, Any, Any, Any, Any, Any]

# /issue is not here: the guided form's ConversationHandler takes it (bot.handlers.guided).
HANDLERS = {
    "start": overview.start,
    "help": overview.help_,
    "whoami": overview.whoami,
    "status": overview.status,
    "agents": agents.agents,
    "agent": agents.agent,
    "issues": issues.issues,
    "assign": issues.assign,
    "priority": queues.priority,
    "backlog": queues.backlog,
    "promote": queues.promote,
    "routines": queues.routines,
    "role": agents.role,
    "reset": agents.reset,
    "pause": agents.pause,
    "resume": agents.resume,
    "wake": agents.wake,
    "rotate": auth.rotate,
    "authcheck": auth.authcheck,
    "mute": alerts.mute,
    "unmute": alerts.unmute,
    "alerts": alerts.alerts,
    "waiting": questions.waiting,
    "costs": overview.costs,
    "digest": overview.digest,
}


def build_application(
    fleet: Fleet,
    token: str,
    base_url: str,
    *,
    request: BaseRequest | None = None,
    get_updates_request: BaseRequest | None = None,
    rate_limiter: BaseRateLimiter[Any] | None = None,
    form_timeout: float = 600.0,
    daily_digest: bool = True,
) -> App:
    """An Application serving `fleet`, not yet initialised or started.

    `request` / `get_updates_request` let tests and the demo talk to the offline Bot API.
    The AIORateLimiter keeps under Telegram's flood limits and, on a 429, waits the
    `retry_after` Telegram asked for and tries again (up to three times).
    """
    builder = ApplicationBuilder().token(token).base_url(base_url)
    if request is not None:
        builder = builder.request(request)
    if get_updates_request is not None:
        builder = builder.get_updates_request(get_updates_request)
    application: App = builder.rate_limiter(rate_limiter or AIORateLimiter(max_retries=3)).build()
    desk = Desk(fleet, Access(fleet.config.telegram), form_timeout=form_timeout)
    application.bot_data[DESK_KEY] = desk
    # Before every handler, and stopping none: who can be reached, and where team chats went.
    application.add_handler(TypeHandler(Update, observe_chat), group=-1)
    # The form first: while it waits for a title, a typed line is its answer, not chatter.
    application.add_handler(build_form_handler(desk))
    for name, handler in HANDLERS.items():
        application.add_handler(CommandHandler(name, handler, filters=NEW_MESSAGES))
    application.add_handler(CallbackQueryHandler(on_button))
    # A text reply to the bot's message about an issue or a question: talk to its agent.
    application.add_handler(
        MessageHandler(NEW_MESSAGES & filters.REPLY & filters.TEXT & ~filters.COMMAND, on_reply)
    )
    # Last in the group: only a command no handler above took reaches it.
    application.add_handler(MessageHandler(NEW_MESSAGES & filters.COMMAND, unknown_command))
    application.add_error_handler(on_error)
    if daily_digest:
        overview.schedule_digest(application)
    return application


def menu() -> list[BotCommand]:
    return [BotCommand(c.name, c.about) for c in COMMANDS]


async def register_commands(application: App) -> None:
    """Publish the command menu (setMyCommands) so clients offer every command."""
    await application.bot.set_my_commands(menu())


async def observe_chat(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """What every update says about its chat, before any handler sees it.

    Someone writing in private has unblocked the bot if they had blocked it: their alerts are
    delivered again at once, not only after the hour of skipping them. A group upgraded to a
    supergroup (Telegram's migrate service messages) is followed by alerts and summaries from
    now on, and commands there keep their team's company, as in the old group."""
    chat = update.effective_chat
    if chat is None:
        return
    desk = desk_of(context)
    outbox = desk.fleet.outbox
    if chat.type == ChatType.PRIVATE:
        if await outbox.undeliverable(str(chat.id)):
            await outbox.mark_deliverable(str(chat.id))
            log.info("chat %s writes to the bot again; delivering to it again", chat.id)
        return
    message = update.effective_message
    if message is not None and message.migrate_to_chat_id:
        await outbox.migrate_chat(str(chat.id), str(message.migrate_to_chat_id))
    elif message is not None and message.migrate_from_chat_id:
        await outbox.migrate_chat(str(message.migrate_from_chat_id), str(chat.id))
    await desk.learn_chat(chat.id)


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A /command nobody handled: point at /help (and ignore commands meant for other bots)."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None or not message.text:
        return
    word = message.text.split()[0]
    name, _, target = word[1:].partition("@")
    if target and target.lower() != (context.bot.username or "").lower():
        return
    desk = desk_of(context)
    role = desk.access.role(user.id)
    if name.lower() == "cancel":  # /cancel outside a form
        await message.reply_text("Nothing to cancel.")
        await desk.audit(user.id, "/cancel", "", "ok", {"chat": message.chat_id})
        return
    if role is Role.STRANGER:
        text = refusal(user.id, role, "", Role.VIEWER)
    else:
        text = f"I don't know /{html.escape(name, quote=False)}. /help lists the commands."
    await message.reply_text(text, parse_mode=ParseMode.HTML)
    result = "refused" if role is Role.STRANGER else "usage"
    await desk.audit(user.id, "unknown", word, result, {"chat": message.chat_id})


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log every unhandled error with its traceback; tell the person something useful."""
    error = context.error
    if isinstance(error, RetryAfter) or (
        isinstance(error, NetworkError) and not isinstance(error, BadRequest)
    ):
        # The rate limiter already retried; Telegram itself is unwell. Nothing to tell anyone.
        log.warning("Telegram call failed after retries: %s", scrub(str(error)))
        return
    log.error(
        "error while handling an update: %s",
        scrub(repr(error)),
        exc_info=(type(error), error, error.__traceback__) if error is not None else None,
    )
    if not isinstance(update, Update):
        return
    if update.callback_query is not None:
        with contextlib.suppress(TelegramError):  # the query may be answered already
            await update.callback_query.answer(
                "Something went wrong on fleetbot's side; it is logged. Try again.",
                show_alert=True,
            )
        return
    chat = update.effective_chat
    if chat is None:
        return
    kind = type(error).__name__ if error is not None else "error"
    try:
        await chat.send_message(
            f"⚠️ Something went wrong on fleetbot's side ({html.escape(kind)}). It is logged "
            "with the details; try again, and if it keeps happening, check the fleetbot log.",
            parse_mode=ParseMode.HTML,
        )
    except TelegramError:
        log.warning("could not tell chat %s about the error", chat.id)
