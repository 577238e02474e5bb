"""Cards: an agent's or an issue's message and buttons, read fresh from the store.

Commands send them, buttons edit them in place; both build them here so a card looks the same
however it was reached, and its buttons match what the person looking at it may do.
"""

from __future__ import annotations

from telegram import InlineKeyboardMarkup, MaybeInaccessibleMessage

from bot.desk import Desk
from bot.roles import Role
from bot.views import keyboards, render
from core import Agent, Company, CompanyNotFound, Issue


async def company_or_none(desk: Desk, company_id: str) -> Company | None:
    try:
        return await desk.service.company(company_id)
    except CompanyNotFound:
        return None


async def agent_card(desk: Desk, agent: Agent, role: Role) -> tuple[str, InlineKeyboardMarkup]:
    service = desk.service
    inbox = await service.inbox(agent.id)
    runs = await service.recent_runs(agent.id, limit=1)
    company = await company_or_none(desk, agent.company_id)
    down = desk.fleet.runtime_watch.unreachable([agent]).get(agent.id)
    text = render.agent_card(
        agent, company, len(inbox), runs[0] if runs else None, desk.clock.now(), down
    )
    keyboard = keyboards.agent_keyboard(
        agent, can_act=role >= Role.OPERATOR, can_rotate=role >= Role.OWNER
    )
    return text, keyboard


async def runs_card(desk: Desk, agent: Agent) -> tuple[str, InlineKeyboardMarkup]:
    runs = await desk.service.recent_runs(agent.id, limit=10)
    return render.runs_list(agent, runs, desk.clock.now()), keyboards.runs_keyboard(agent)


async def issue_card(
    desk: Desk, issue: Issue, role: Role
) -> tuple[str, InlineKeyboardMarkup | None]:
    comments = await desk.service.comments(issue.id)
    text = render.issue_card(issue, comments, desk.clock.now())
    return text, keyboards.issue_keyboard(issue, can_act=role >= Role.OPERATOR)


async def link_issue(desk: Desk, message: MaybeInaccessibleMessage | None, issue_id: str) -> None:
    """The message shows the issue's card: a reply to it is a comment on the issue."""
    if message is not None:
        await desk.service.link_message(message.chat.id, message.message_id, "issue", issue_id)
