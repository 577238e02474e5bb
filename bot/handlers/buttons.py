"""Every inline button of fleetbot's ends up here (the guided form's while it is open): decode
the callback data, re-authorise, route by kind to its topic's handler, audit, answer.

Callback data grants nothing: the person pressing is checked against their role now (a card in
a group chat can be pressed by anyone there), and what it names is read fresh from the store by
the handler. A press on something gone, changed or expired gets a polite answer instead of an
action.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from telegram import Update
from telegram.ext import ContextTypes

from bot.desk import Call
from bot.handlers.agents import on_agent
from bot.handlers.alerts import on_alert
from bot.handlers.confirm import confirm_need, on_confirm
from bot.handlers.issues import on_issue
from bot.handlers.questions import on_question
from bot.handlers.queues import on_routine
from bot.roles import Role, button_need
from bot.views import keyboards
from bot.views.keyboards import Kind, Press, StaleButton as Stale
from core import FleetbotError

Action = Callable[[Call, Press], Awaitable[str]]


def refusal_text(user_id: int, role: Role, need: Role) -> str:
    if role is Role.STRANGER:
        return (
            f"You are not on this fleet's desk. Your Telegram user id is {user_id}: ask an "
            "owner to add it to the config."
        )
    return f"This button needs the {need.label} role; you are {role.label}."


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Every inline button of fleetbot's ends up here (the guided form's while it is open)."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    call = Call.of(update, context, user.id)
    async with call.audited("button", "", data=query.data) as outcome:
        try:
            press = keyboards.decode(query.data)
            outcome.target, outcome.action = press.ref, f"button.{press.kind.value}.{press.verb}"
            need = button_need(press.kind.value, press.verb, press.arg, press.ref)
            if press.kind is Kind.CONFIRM:  # its data names no action; the desk knows which
                need = max(need, confirm_need(call, press))
            if call.role < need:
                outcome.decline("refused", refusal_text(user.id, call.role, need))
                return
            handler = _HANDLERS.get(press.kind)
            if handler is None:  # a form button after its form closed
                raise Stale(
                    "This form is closed (filed, cancelled or timed out). Send /issue again."
                )
            outcome.answer = await handler(call, press)
        except Stale as exc:
            outcome.decline(exc.result, exc.reason)
        except FleetbotError as exc:
            outcome.decline(f"error:{exc.code}", exc.message)


_HANDLERS: dict[Kind, Action] = {
    Kind.AGENT: on_agent,
    Kind.ISSUE: on_issue,
    Kind.CONFIRM: on_confirm,
    Kind.ALERT: on_alert,
    Kind.QUESTION: on_question,
    Kind.ROUTINE: on_routine,
}
