"""The read-only commands: /start /help /whoami /status /agents /agent /issues /costs /digest.

Each handler is wrapped by `access.guarded`, which checks the role, answers bad arguments with
the usage line and audits the call; a handler only parses, asks the service and renders.
"""

from __future__ import annotations

from bot import args, cards, render
from bot.access import COMMANDS, Role, guarded
from bot.commands_alerts import firing_by_company
from bot.desk import Call
from bot.digest import digest_text
from core.errors import AgentNotFound, IssueNotFound
from core.models import IssueStatus
from core.reports.board import fleet_board
from core.service import IssueFilter

ISSUE_LIST_LIMIT = 30


@guarded("start")
async def start(call: Call) -> None:
    """Greet, say who you are here, and show the board's one-line gist."""
    boards = await fleet_board(call.service.db, call.now)
    agents = sum(sum(b.agents.values()) for b in boards)
    work = sum(b.open_issues for b in boards)
    await call.reply(
        "👋 <b>fleetbot</b> — the desk for your agent fleet.\n"
        f"You are {call.role.label} here. {render.count(len(boards), 'company')}, "
        f"{render.count(agents, 'agent')}, {render.count(work, 'open issue')}.\n"
        "/status for the board, /help for everything you can do."
    )


@guarded("help")
async def help_(call: Call) -> None:
    """The commands this person may use, with their usage."""
    lines = [f"<b>What you can do</b> (you are {call.role.label})"]
    for c in COMMANDS:
        if c.need <= call.role:
            lines.append(f"<code>{render.esc(c.usage)}</code> — {render.esc(c.about)}")
    lines.append(
        "\nASSIGNEE is an agent id or a role; write role@company when a role exists in "
        "several companies. Durations: 30m, 4h, 1d."
    )
    await call.reply("\n".join(lines))


@guarded("whoami")
async def whoami(call: Call) -> None:
    """Your user id and role; works for strangers too (it is how they learn their id)."""
    user = call.update.effective_user
    name = render.esc(user.full_name) if user is not None else "you"
    text = f"You are {name}, Telegram user id <code>{call.user_id}</code>.\n"
    if call.role is Role.STRANGER:
        text += (
            "You are not on this desk yet: ask an owner to add your id to telegram.owners, "
            "operators or viewers in config.yaml."
        )
    else:
        text += f"Role here: <b>{call.role.label}</b>."
    if call.chat_id is not None and call.chat_id != call.user_id:
        text += f"\nThis chat's id: <code>{call.chat_id}</code>."
    await call.reply(text)


@guarded("status")
async def status(call: Call) -> None:
    """The board: per company, agents by status, work, alerts firing, spend this month."""
    args.no_args(call.rest)
    boards = await fleet_board(call.service.db, call.now)
    await call.reply(render.status_board(boards, await firing_by_company(call.desk), call.now))


@guarded("agents")
async def agents(call: Call) -> None:
    """Agents with their status, grouped by company; in a team chat, that team's."""
    company = args.optional_word(call.rest, "company") or call.desk.chat_company(call.chat_id)
    found = await call.service.agents(company)
    await call.reply(render.agent_list(found, await call.service.companies()))


@guarded("agent")
async def agent(call: Call) -> None:
    """One agent's card with its buttons."""
    found = await call.service.agent(args.one_word(call.rest, "agent"))
    text, keyboard = await cards.agent_card(call.desk, found, call.role)
    await call.reply(text, keyboard)


@guarded("issues")
async def issues(call: Call) -> None:
    """Open issues by default; filter by status words, company and @agent, or show one card."""
    query = args.parse_issue_query(call.rest)
    company, assignee = query.company, query.assignee
    for name in query.names:
        if args.ISSUE_ID.match(name) and len(query.names) == 1:
            try:
                issue = await call.service.issue(name)
            except IssueNotFound:
                pass
            else:
                text, keyboard = await cards.issue_card(call.desk, issue, call.role)
                await call.reply(text, keyboard)
                return
        if company is None and await cards.company_or_none(call.desk, name) is not None:
            company = name
        elif assignee is None:
            assignee = name
        else:
            raise args.UsageError(f"{name!r} is neither an issue id nor a company")
    if assignee is not None:
        try:
            assignee = (await call.service.agent(assignee)).id
        except AgentNotFound:
            raise args.UsageError(
                f"{assignee!r} is not an issue id, a company or an agent"
            ) from None
    if company is None and assignee is None:
        company = call.desk.chat_company(call.chat_id)
    if company is not None:
        company = (await call.service.company(company)).id
    statuses = tuple(s for s in IssueStatus if s in query.statuses)
    found = await call.service.issues(
        IssueFilter(company, assignee, statuses, limit=ISSUE_LIST_LIMIT + 1)
    )
    await call.reply(
        render.issue_list(
            found[:ISSUE_LIST_LIMIT],
            _heading(query.statuses, company, assignee),
            len(found) > ISSUE_LIST_LIMIT,
        )
    )


def _heading(statuses: frozenset[IssueStatus], company: str | None, assignee: str | None) -> str:
    # The first word for a set of statuses names it ("doing" over its aliases).
    names = {v: k for k, v in reversed(args.STATUS_WORDS.items())}
    what = names.get(statuses) or ", ".join(s.value for s in IssueStatus if s in statuses)
    heading = f"Issues: {what}"
    if company:
        heading += f" in {company}"
    if assignee:
        heading += f" for {assignee}"
    return heading


@guarded("costs")
async def costs(call: Call) -> None:
    """LLM calls, tokens and spend this month per company, with the biggest spenders."""
    company = args.optional_word(call.rest, "company") or call.desk.chat_company(call.chat_id)
    companies = await call.service.companies()
    company_id = None
    if company is not None:
        company_id = (await call.service.company(company)).id
        companies = [c for c in companies if c.id == company_id]
    month = await call.desk.fleet.costs.month(company_id)
    budgets = {c.id: c.budget.monthly_usd if c.budget else None for c in call.desk.config.companies}
    await call.reply(render.costs(month, companies, await call.service.agents(company_id), budgets))


@guarded("digest")
async def digest(call: Call) -> None:
    """The daily digest for the last 24 hours, now."""
    args.no_args(call.rest)
    await call.reply(await digest_text(call.desk, call.now))
