"""The guard every command goes through: look up the role, refuse or run, answer errors, audit.

Anyone not on the desk is refused with their user id in the answer, so the owner can add them.
Every attempt, allowed or not, lands in the audit log as `tg:<user id>`. The roles and the
command catalog themselves are in bot.roles.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telegram import Update
from telegram.ext import filters

from bot.args import UsageError, command_rest
from bot.desk import Call, Context
from bot.roles import ANONYMOUS_ADMIN, BY_NAME, Command, Role
from bot.views.html import esc
from core import FleetbotError

# What commands and typed answers act on: new messages only. python-telegram-bot hands edited
# messages to CommandHandlers and MessageHandlers too, so an edited `/issue …` filed a second
# issue; an edit changes what the chat shows, not what was asked.
NEW_MESSAGES = filters.UpdateType.MESSAGE


ANONYMOUS_HINT = (
    "This message came from an anonymous group admin, so Telegram hides who sent it: "
    "fleetbot sees only the group. Message me privately and send /whoami there to see your "
    "own user id."
)


def refusal(user_id: int, role: Role, what: str, need: Role) -> str:
    """The answer to someone who may not do `what`."""
    if user_id == ANONYMOUS_ADMIN:
        return (
            f"⛔ {ANONYMOUS_HINT} Commands work from your own account: in private, or here "
            "with “Remain anonymous” turned off in your admin rights."
        )
    if role is Role.STRANGER:
        return (
            "⛔ You are not on this fleet's desk.\n"
            f"Your Telegram user id is <code>{user_id}</code>. Ask an owner to add it to "
            "telegram.owners, operators or viewers in config.yaml."
        )
    return (
        f"⛔ {esc(what)} needs the {need.label} role; you are {_article(role)} {role.label}. "
        "Ask an owner if you need it."
    )


def _article(role: Role) -> str:
    return "an" if role.label[0] in "aeiou" else "a"


def usage_text(command: Command, problem: str) -> str:
    return f"⚠️ {esc(problem)}\nUsage: <code>{esc(command.usage)}</code>"


CommandFn = Callable[[Call], Awaitable[object]]
PtbCallback = Callable[[Update, Context], Coroutine[Any, Any, object]]


def guarded(name: str) -> Callable[[CommandFn], PtbCallback]:
    """Wrap a command: look up the role, refuse or run, answer errors, audit the outcome.

    Wrong arguments (UsageError) are answered with the usage line, fleetbot's own errors with
    their message; anything else is audited as crashed and left to the error handler.
    """
    command = BY_NAME[name]

    def wrap(fn: CommandFn) -> PtbCallback:
        @functools.wraps(fn)
        async def handler(update: Update, context: Context) -> object:
            user, message = update.effective_user, update.effective_message
            if user is None or message is None:
                return None
            call = Call.of(update, context, user.id, command_rest(message.text or ""))
            async with call.audited(f"/{name}", call.rest) as outcome:
                try:
                    if call.role < command.need:
                        outcome.result = "refused"
                        await call.reply(refusal(user.id, call.role, f"/{name}", command.need))
                        return None
                    return await fn(call)
                except UsageError as exc:
                    outcome.result = "usage"
                    await call.reply(usage_text(command, exc.problem))
                    return None
                except FleetbotError as exc:
                    outcome.result = f"error:{exc.code}"
                    await call.reply(f"⚠️ {esc(exc.message)}")
                    return None

        return handler

    return wrap
