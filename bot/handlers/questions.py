"""Agents' questions from the phone: /waiting, and taps on question cards.

A card's buttons are `v1:q:<id>:ans:<n>` (answer with choice n, from 0) and `v1:q:<id>:show`
(send the card, from the pinned "waiting on you" card). Nothing in the data is believed: the
question is read from the store, the choice must be one it has, a team chat only answers its
own company's questions, and the person's role must allow it (bot.roles.answer_need: approvals
are the owners' unless telegram.approvers says operators). A made-up id or choice is refused
and does nothing; a tap on a question someone already answered says who, and shows the card
as it is now. A text reply to a card answers it too (bot.handlers.replies).
"""

from __future__ import annotations

from telegram import Message

from bot.access import guarded, refusal
from bot.desk import Call, edit_html
from bot.roles import answer_need
from bot.views.keyboards import Press, RefusedButton, StaleButton as Stale
from bot.views.questions import question_card, waiting_list
from core import FleetbotError, Question

MAX_CARDS = 10  # cards /waiting sends at most, oldest first


def may_answer(call: Call, q: Question) -> str | None:
    """Why this person may not answer `q` here, or None if they may."""
    need = answer_need(q.kind, call.desk.config.telegram)
    if call.role < need:
        what = f"Answering {q.ref} ({q.kind.value})"
        return refusal(call.user_id, call.role, what, need)
    company = call.desk.chat_company(call.chat_id)
    if company is not None and company != q.company_id:
        return f"{q.ref} is {q.company_id}'s; answer it in its own team chat or in private."
    return None


def person(call: Call) -> str:
    """How the answer names its author: their Telegram name (the actor id comes with it)."""
    user = call.update.effective_user
    return user.full_name if user is not None else ""


async def link_card(call: Call, sent: Message | None, q: Question) -> None:
    """A reply to this card answers `q` (bot.handlers.replies)."""
    if sent is not None:
        await call.service.link_message(sent.chat_id, sent.message_id, "question", q.issue_id, q.id)


async def send_card(call: Call, q: Question) -> None:
    can = may_answer(call, q) is None
    text, keyboard = await question_card(call.service, q, call.now, can_answer=can)
    await link_card(call, await call.reply(text, keyboard), q)


@guarded("waiting")
async def waiting(call: Call) -> None:
    """Open questions and approvals, oldest first: a list, then each one's card to answer.
    In a team chat, that company's only."""
    company = call.desk.chat_company(call.chat_id)
    found = await call.service.open_questions(company)
    if not found:
        await call.reply("✅ Nothing is waiting on you: no agent has an open question.")
        return
    cards = found[:MAX_CARDS]
    await call.reply(waiting_list(found, call.now, len(cards)))
    for q in cards:
        await send_card(call, q)
    call.note(f"{len(found)} open")


async def pressed_question(call: Call, press: Press) -> Question:
    """The question a press names; refused if there is none (the data was made up)."""
    if not (press.ref.isascii() and press.ref.isdigit()):
        raise RefusedButton("This button names no question fleetbot asked. Send /waiting.")
    try:
        return await call.service.question(press.ref)
    except FleetbotError:
        raise RefusedButton(
            f"There is no question Q{press.ref[:12]}; this button is not one fleetbot sent."
        ) from None


async def refresh_card(call: Call, q: Question) -> None:
    """Show the pressed card as the question is now (answered: who, what; no buttons)."""
    fresh = await call.service.question(q.id)
    text, keyboard = await question_card(call.service, fresh, call.now)
    await edit_html(call.update, text, keyboard)


async def on_question(call: Call, press: Press) -> str:
    q = await pressed_question(call, press)
    if press.verb == "show":
        company = call.desk.chat_company(call.chat_id)
        if company is not None and company != q.company_id:
            raise RefusedButton(f"{q.ref} is not this team's question.")
        await send_card(call, q)
        return ""
    if press.verb != "ans":
        raise RefusedButton("This button is not one fleetbot sends. Send /waiting again.")
    if not (press.arg.isascii() and press.arg.isdigit() and int(press.arg) < len(q.choices)):
        raise RefusedButton(f"{q.ref} has no such choice; this button is not one fleetbot sent.")
    why_not = may_answer(call, q)
    if why_not is not None:
        raise RefusedButton(why_not.removeprefix("⛔ "))
    try:
        answered = await call.service.answer(
            q.id, call.actor, choice=int(press.arg), name=person(call)
        )
    except FleetbotError as exc:
        if exc.code != "question_closed":
            raise
        await refresh_card(call, q)  # someone was first: show what they answered
        raise Stale(exc.message) from None
    await refresh_card(call, answered)
    call.note(f"{q.ref}: {answered.answer}")
    return f"✅ {q.ref}: {answered.answer}"
