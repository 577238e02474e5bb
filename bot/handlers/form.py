"""The guided /issue form: its state per user and chat, and the question each step shows.

A question after a button press edits the form message in place; after a typed answer (or the
alert's "File issue") it comes as a new message and the step before loses its buttons. The
conversation that moves from step to step is bot.handlers.guided.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import TelegramError

from bot.args import MAX_TITLE
from bot.desk import Call, edit_html
from bot.views import render
from bot.views.keyboards import Kind, StaleButton, button
from core import Agent

COMPANY, ASSIGNEE, TITLE, BODY, CONFIRM = range(5)
STEPS = 5
_FORMS = "fleetbot.forms"  # user_data key: chat id -> Form
_NONE = "-"  # the id slot of form buttons that carry no value


@dataclass
class Form:
    chat_id: int
    company: str | None = None
    company_name: str = ""
    assignee: str | None = None  # an agent id
    assignee_label: str = ""
    title: str = ""
    body: str = ""
    message_id: int | None = None  # the form's latest message (edited on timeout)
    skip_company: bool = False  # only one company, or chosen by the chat: no way back to it
    state: int = COMPANY
    picking: bool = False  # step 2 shows the agents of one role rather than the roles


class _Closed(StaleButton):
    """The form this update belongs to is gone (filed, cancelled, timed out, restarted)."""


def _forms(call: Call) -> dict[int, Form]:
    store = call.context.user_data
    if store is None:  # updates without a user never reach the form
        raise _Closed("This form is closed.")
    forms: dict[int, Form] = store.setdefault(_FORMS, {})
    return forms


def _form(call: Call) -> Form:
    form = _forms(call).get(call.chat_id or 0)
    if form is None:
        raise _Closed("This form is closed. Send /issue to start a new one.")
    return form


def _nav(back: bool = True) -> list[InlineKeyboardButton]:
    row = [button("✖️ Cancel", Kind.FORM, _NONE, "cancel")]
    if back:
        row.insert(0, button("◀️ Back", Kind.FORM, _NONE, "back"))
    return row


def _head(form: Form, step: int) -> str:
    where = f" for <b>{render.esc(form.company_name)}</b>" if form.company_name else ""
    return f"📝 <b>New issue</b>{where} · step {step} of {STEPS}\n"


async def _show(call: Call, form: Form, text: str, rows: list[list[InlineKeyboardButton]]) -> None:
    """A button on the form edits it in place; anything else (a typed answer, the alert's
    "File issue") gets a fresh form message below."""
    keyboard = InlineKeyboardMarkup(rows)
    query = call.update.callback_query
    if (
        query is not None
        and query.message is not None
        and query.message.message_id == form.message_id
    ):
        await edit_html(call.update, text, keyboard)
    else:
        previous = form.message_id
        sent = await call.reply(text, keyboard)
        if sent is not None:
            form.message_id = sent.message_id
        if previous is not None:
            # One live form message at a time: the step before loses its buttons.
            with contextlib.suppress(TelegramError):
                await call.context.bot.edit_message_reply_markup(
                    form.chat_id, previous, reply_markup=None
                )


def _write(call: Call, what: str) -> str:
    """How to answer in words. A bot in a group sees only replies to its own messages (privacy
    mode, Telegram's default), so there the answer must be a reply to the form."""
    chat = call.update.effective_chat
    if chat is not None and chat.type != "private":
        return f"reply to this message with {what}"
    return f"type {what}"


async def ask_company(call: Call, form: Form) -> int:
    form.state = COMPANY
    companies = await call.service.companies()
    rows = [[button(c.name, Kind.FORM, c.id, "company")] for c in companies]
    rows.append(_nav(back=False))
    await _show(call, form, _head(form, 1) + "Which company is it for?", rows)
    return COMPANY


async def ask_assignee(call: Call, form: Form, agents: list[Agent] | None = None) -> int:
    form.state, form.picking = ASSIGNEE, agents is not None
    if agents is None:
        everyone = await call.service.agents(form.company)
        by_role: dict[str, int] = {}
        for a in everyone:
            by_role[a.role] = by_role.get(a.role, 0) + 1
        buttons = [
            button(role.upper() + (f" ×{n}" if n > 1 else ""), Kind.FORM, role, "role")
            for role, n in sorted(by_role.items())
        ]
        prompt = f"Who should do it? Tap a role, or {_write(call, 'an agent id')}."
    else:
        buttons = [button(f"{a.name} · {a.role}", Kind.FORM, a.id, "agent") for a in agents]
        prompt = "Several agents have that role. Which one?"
    rows = [buttons[k : k + 3] for k in range(0, len(buttons), 3)]
    rows.append(_nav(back=not form.skip_company or agents is not None))
    await _show(call, form, _head(form, 2) + prompt, rows)
    return ASSIGNEE


async def ask_title(call: Call, form: Form) -> int:
    form.state = TITLE
    text = (
        _head(form, 3) + f"For <b>{render.esc(form.assignee_label)}</b>.\n"
        f"{_write(call, 'the title').capitalize()} (one line, under {MAX_TITLE} characters)."
    )
    await _show(call, form, text, [_nav()])
    return TITLE


async def ask_body(call: Call, form: Form) -> int:
    form.state = BODY
    text = (
        _head(form, 4) + f"<b>{render.esc(form.title)}</b>\n"
        f"{_write(call, 'the details the agent needs').capitalize()}, or tap Skip."
    )
    await _show(call, form, text, [[button("⏭ Skip", Kind.FORM, _NONE, "skip")], _nav()])
    return BODY


async def ask_confirm(call: Call, form: Form) -> int:
    form.state = CONFIRM
    body = (
        f"\n<blockquote>{render.esc(render.clip_block(form.body, 1000))}</blockquote>"
        if form.body
        else ""
    )
    text = (
        _head(form, 5) + f"To: <b>{render.esc(form.assignee_label)}</b>\n"
        f"Title: <b>{render.esc(form.title)}</b>{body}\nFile it?"
    )
    await _show(call, form, text, [[button("✅ File it", Kind.FORM, _NONE, "file")], _nav()])
    return CONFIRM
