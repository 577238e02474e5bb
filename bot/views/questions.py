"""What the bot shows of agents' questions: the question card, /waiting, the pinned card.

A card says who asks, about which issue, the question and how to answer: its choices as buttons
(`v1:q:<id>:ans:<n>`, n from 0; an approval's are Approve and Reject), or a reply to the card
in words. Once answered it says who answered what, and has no buttons. The same card is what
the notifier sends as the question's alert (with an Acknowledge button that stops reminders),
what /waiting lists and what the pinned "waiting on you" card opens (`v1:q:<id>:show`).

`render_question` is a pure function of the question, its issue, its agent and `now`;
`question_card` reads those from the service facade first.
"""

from __future__ import annotations

from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.redaction import scrub
from bot.views.html import clip, clip_block, esc
from bot.views.keyboards import Kind, button
from core import (
    Agent,
    FleetbotError,
    FleetService,
    Issue,
    Question,
    QuestionKind,
    QuestionStatus,
    utc,
)

MAX_PINNED = 15  # questions the pinned card lists; the rest are counted
_CHOICE_ICONS = {"Approve": "✅", "Reject": "❌"}


def _at(ts: float, now: float) -> str:
    """When, as a stable stamp (a card is edited only when something changed)."""
    day = "%Y-%m-%d " if now - ts > 20 * 3600 else ""
    return utc(ts).strftime(f"{day}%H:%M UTC")


def _who(agent: Agent | None, agent_id: str) -> str:
    return f"{esc(agent.name)} ({esc(agent.role)})" if agent is not None else esc(agent_id)


def render_question(q: Question, issue: Issue | None, agent: Agent | None, now: float) -> str:
    """The card: who asks about what, the question, and how to answer (or the answer)."""
    what = "approval" if q.kind is QuestionKind.APPROVAL else "question"
    if q.status is QuestionStatus.ANSWERED:
        head = (
            f"✅ <b>{q.ref}</b> · {what} answered by {esc(q.answerer)}: "
            f"<b>{esc(clip(scrub(q.answer or ''), 300))}</b>"
        )
    elif q.status is QuestionStatus.CANCELLED:
        head = f"✖️ <b>{q.ref}</b> · {what} cancelled: {esc(clip(scrub(q.answer or ''), 200))}"
    else:
        asks = "asks for approval" if q.kind is QuestionKind.APPROVAL else "asks"
        head = f"{_icon(q)} <b>{q.ref}</b> · {_who(agent, q.agent_id)} {asks}"
    title = f" · {esc(clip(scrub(issue.title), 120))}" if issue is not None else ""
    lines = [
        head,
        f"About <code>{esc(q.issue_id)}</code>{title}",
        f"<blockquote>{esc(clip_block(scrub(q.text), 2000))}</blockquote>",
    ]
    if q.status is QuestionStatus.OPEN:
        if q.kind is QuestionKind.APPROVAL:
            lines.append(
                "Tap Approve or Reject, or reply to this message: approve or reject, and a "
                "reason after it if you like."
            )
        elif q.choices:
            lines.append("Tap a choice, or reply to this message to answer in your own words.")
        else:
            lines.append("Reply to this message with your answer.")
    lines.append(f"Asked by {esc(q.agent_id)} at {_at(q.asked_at, now)}")
    return "\n".join(lines)


def choice_label(choice: str) -> str:
    icon = _CHOICE_ICONS.get(choice)
    return f"{icon} {choice}" if icon else choice


def question_keyboard(
    q: Question, *, can_answer: bool = True, alert_id: int | None = None
) -> InlineKeyboardMarkup | None:
    """The choices as buttons while it is open (two short ones to a row); with `alert_id`,
    the alert's Acknowledge too (no more reminders)."""
    if q.status is not QuestionStatus.OPEN:
        return None
    rows: list[list[InlineKeyboardButton]] = []
    if can_answer:
        row: list[InlineKeyboardButton] = []
        for n, choice in enumerate(q.choices):
            row.append(button(choice_label(choice), Kind.QUESTION, str(q.id), "ans", str(n)))
            if len(row) == 2 or len(choice) > 18:
                rows.append(row)
                row = []
        if row:
            rows.append(row)
    if alert_id is not None:
        ack = button("👍 Seen: no reminders", Kind.ALERT, str(alert_id), "ack")
        rows.append([ack])
    return InlineKeyboardMarkup(rows) if rows else None


async def question_card(
    service: FleetService,
    q: Question,
    now: float,
    *,
    can_answer: bool = True,
    alert_id: int | None = None,
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The card for `q` as it is in the store now, and its buttons."""
    issue: Issue | None
    try:
        issue = await service.issue(q.issue_id)
    except FleetbotError:
        issue = None
    agent = await service.maybe_agent(q.agent_id)
    text = render_question(q, issue, agent, now)
    return text, question_keyboard(q, can_answer=can_answer, alert_id=alert_id)


def _icon(q: Question) -> str:
    return "🛂" if q.kind is QuestionKind.APPROVAL else "❓"


def question_line(q: Question, now: float) -> str:
    return (
        f"{_icon(q)} <b>{q.ref}</b> <code>{esc(q.issue_id)}</code> {esc(q.agent_id)}: "
        f"{esc(clip(scrub(q.text), 90))} · {_at(q.asked_at, now)}"
    )


def waiting_list(questions: Sequence[Question], now: float, shown: int) -> str:
    """/waiting's heading: what waits, oldest first; the cards follow."""
    approvals = sum(1 for q in questions if q.kind is QuestionKind.APPROVAL)
    head = (
        f"<b>Waiting on you</b>: {len(questions) - approvals} question(s), {approvals} approval(s)"
    )
    lines = [head, *(question_line(q, now) for q in questions[:MAX_PINNED])]
    if len(questions) > MAX_PINNED:
        lines.append(f"… and {len(questions) - MAX_PINNED} more")
    if shown < len(questions):
        lines.append(f"\nThe oldest {shown} follow as cards; answer them to see the next.")
    return "\n".join(lines)


def pinned_card(
    questions: Sequence[Question], now: float
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The pinned "waiting on you" card: each open question, a button to open its card."""
    if not questions:
        return "📌 <b>Waiting on you</b>: nothing. Agents' questions show here as they come.", None
    lines = [f"📌 <b>Waiting on you</b>: {len(questions)}"]
    lines += [question_line(q, now) for q in questions[:MAX_PINNED]]
    if len(questions) > MAX_PINNED:
        lines.append(f"… and {len(questions) - MAX_PINNED} more: /waiting")
    lines.append("Tap one to answer it, or send /waiting.")
    buttons = [
        button(f"{_icon(q)} {q.ref}", Kind.QUESTION, str(q.id), "show")
        for q in questions[:MAX_PINNED]
    ]
    rows = [buttons[k : k + 3] for k in range(0, len(buttons), 3)]
    return "\n".join(lines), InlineKeyboardMarkup(rows)
