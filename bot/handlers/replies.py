"""Replies: talking to an agent by replying to what the bot showed of its work.

A text reply to an agent's summary, a run's summary, an issue card or a question card is read
through the message link the bot recorded when it sent that message (core: `message_link`):
- a question card whose question is open: the reply answers it (as a tap would, with the same
  role rules), and the card is edited to show the answer;
- anything else about an issue: the reply is a comment on it (author `tg:<user id>`) that
  wakes its assignee with reason `comment` (core: `talk`; an issue in review goes back to in
  progress; a finished one keeps the comment and wakes nobody, and the reply says so).
Operators and owners may; viewers and strangers are refused like any write. A reply to any
other message is chatter and is left alone. Every reply that is acted on is audited (`reply`).
"""

from __future__ import annotations

import logging

from telegram import Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest

from bot.access import refusal
from bot.desk import Call, Context, desk_of
from bot.handlers.questions import may_answer, person
from bot.roles import Role
from bot.views.html import clip, esc
from bot.views.questions import question_card
from core import FleetbotError, MessageLink, Question

log = logging.getLogger(__name__)


async def on_reply(update: Update, context: Context) -> None:
    """A text reply to one of the bot's messages about an issue or a question."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None or not message.text:
        return
    target = message.reply_to_message
    if target is None or target.from_user is None or target.from_user.id != context.bot.id:
        return
    desk = desk_of(context)
    link = await desk.service.message_link(message.chat_id, target.message_id)
    if link is None:
        return  # a reply to some other message of the bot's: not talk to an agent
    call = Call.of(update, context, user.id, message.text)
    subject = f"Q{link.question_id}" if link.question_id is not None else link.issue_id or ""
    async with call.audited("reply", subject, kind=link.kind) as outcome:
        if call.role < Role.OPERATOR:
            outcome.result = "refused"
            await call.reply(refusal(user.id, call.role, "Replying to an agent", Role.OPERATOR))
            return
        try:
            if link.question_id is not None:
                q = await call.service.question(link.question_id)
                if q.open:
                    outcome.result = await _answer(call, q, target)
                    return
                call.note(f"{q.ref} is {q.status.value}: a comment instead")
            outcome.result = await _talk(call, link)
        except FleetbotError as exc:
            outcome.result = f"error:{exc.code}"
            await call.reply(f"⚠️ {esc(exc.message)}")


async def _answer(call: Call, q: Question, card: Message) -> str:
    why_not = may_answer(call, q)
    if why_not is not None:
        await call.reply(why_not)
        return "refused"
    answered = await call.service.answer(q.id, call.actor, text=call.rest, name=person(call))
    call.note(f"{q.ref}: {clip(answered.answer or '', 100)}")
    await _show_answered(call, answered, card)
    await call.reply(
        f"✅ {q.ref} answered: <b>{esc(clip(answered.answer or '', 300))}</b>. "
        f"The agent working on {esc(q.issue_id)} is woken with it."
    )
    return "ok"


async def _show_answered(call: Call, q: Question, card: Message) -> None:
    """Edit the card replied to into its answered form (the notifier edits its other copies)."""
    text, keyboard = await question_card(call.service, q, call.now)
    try:
        await call.context.bot.edit_message_text(
            text,
            chat_id=card.chat_id,
            message_id=card.message_id,
            parse_mode=ParseMode.HTML,
            reply_markup=keyboard,
        )
    except BadRequest as exc:
        if "not modified" not in exc.message.lower():
            log.warning("could not edit the card of %s: %s", q.ref, exc.message)


async def _talk(call: Call, link: MessageLink) -> str:
    if link.issue_id is None:
        await call.reply("This message is about no issue, so there is nothing to comment on.")
        return "usage"
    talk = await call.service.talk(link.issue_id, call.rest, call.actor, name=person(call))
    call.note(f"comment {talk.comment.id}; woke {talk.woke or 'nobody'}")
    await call.reply(f"💬 Comment added to <b>{esc(talk.issue.id)}</b>. {esc(talk.why)}")
    return "ok"
