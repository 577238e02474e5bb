"""Issues: /issues (a list, or one card), /issue with arguments, /assign, and presses on issue
cards. The guided /issue without arguments is bot.handlers.guided.
"""

from __future__ import annotations

from telegram import InlineKeyboardMarkup

from bot import args
from bot.access import guarded
from bot.desk import Call, edit_html
from bot.roles import Role
from bot.views import cards, keyboards, render, routines as routines_view
from bot.views.keyboards import Press, StaleButton as Stale
from core import AgentNotFound, FleetbotError, Issue, IssueFilter, IssueNotFound, IssueStatus

ISSUE_LIST_LIMIT = 30


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
                await cards.link_issue(call.desk, await call.reply(text, keyboard), issue.id)
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


async def file_issue(call: Call, parsed: args.IssueArgs, company: str | None = None) -> None:
    """File from `/issue ASSIGNEE TITLE [| body]`; in a team chat, roles resolve in its company."""
    scope = company or call.desk.chat_company(call.chat_id)
    if "@" in parsed.assignee:
        scope = None  # role@company names its own company
    issue = await call.service.file_issue(
        title=parsed.title,
        assignee=parsed.assignee,
        actor=call.actor,
        company=scope,
        body=parsed.body,
        priority=parsed.priority,
        backlog=parsed.backlog,
    )
    call.note(f"filed {issue.id} for {issue.assignee_id}")
    text, keyboard = await cards.issue_card(call.desk, issue, call.role)
    where = " in the backlog" if parsed.backlog else ""
    sent = await call.reply(
        f"📝 Filed <b>{issue.id}</b> for {render.esc(issue.assignee_id)}{where}.\n\n{text}",
        keyboard,
    )
    await cards.link_issue(call.desk, sent, issue.id)


@guarded("assign")
async def assign(call: Call) -> None:
    """Give an issue to another agent (or role); it gets a fresh attempt budget."""
    issue_id, assignee = args.two_words(call.rest, "issue", "assignee")
    issue = await call.service.assign(issue_id, assignee, call.actor)
    call.note(f"{issue.id} -> {issue.assignee_id}")
    text, keyboard = await cards.issue_card(call.desk, issue, call.role)
    sent = await call.reply(
        f"👤 {issue.id} now goes to {render.esc(issue.assignee_id)}.\n\n{text}", keyboard
    )
    await cards.link_issue(call.desk, sent, issue.id)


async def find_issue(call: Call, ref: str) -> Issue:
    try:
        return await call.service.issue(ref)
    except FleetbotError:
        raise Stale("That issue no longer exists. /issues lists the current ones.") from None


async def on_issue(call: Call, press: Press) -> str:
    issue = await find_issue(call, press.ref)
    actor = call.actor
    if press.verb == "promote" and press.arg:  # from the /backlog list: redraw the list
        return await promote_from_list(call, issue, press.arg)
    if press.verb == "assign":
        if issue.status.terminal:
            raise Stale(f"{issue.id} is {issue.status.value}; there is nothing to assign.")
        agents = await call.service.agents(issue.company_id)
        text, _ = await cards.issue_card(call.desk, issue, call.role)
        await edit_html(
            call.update,
            text + "\n\n👤 <b>Who should take it?</b>",
            keyboards.assign_keyboard(issue, agents),
        )
        return ""
    answer = ""
    try:
        if press.verb == "to":
            agents = await call.service.agents(issue.company_id)
            agent = next((a for a in agents if keyboards.arg_names(press.arg, a.id)), None)
            if agent is None:
                raise Stale("That agent is no longer in this company. Tap Assign again.")
            issue = await call.service.assign(issue.id, agent.id, actor)
            answer = f"👤 {issue.id} now goes to {agent.id}."
        elif press.verb == "cancel":
            issue = await call.service.move(
                issue.id, IssueStatus.CANCELLED, actor, f"cancelled by {actor}"
            )
            answer = f"✖️ {issue.id} is cancelled."
        elif press.verb == "retry":
            issue = await call.service.move(
                issue.id, IssueStatus.TODO, actor, f"retried by {actor}"
            )
            answer = f"🔁 {issue.id} is back in {issue.assignee_id}'s inbox."
        elif press.verb == "promote":
            issue = await promote(call, issue)
            answer = promoted(issue)
        elif press.verb != "show":
            raise Stale("This button is from another fleetbot version. Send /issues again.")
    finally:
        fresh = await call.service.issue(issue.id)
        text, keyboard = await cards.issue_card(call.desk, fresh, call.role)
        await edit_html(call.update, text, keyboard)
    call.note(answer or press.verb)
    return answer


async def promote(call: Call, issue: Issue) -> Issue:
    """Backlog → todo: the assignee is woken with it (the service's move does that)."""
    if issue.status is not IssueStatus.BACKLOG:
        raise Stale(f"{issue.id} is {issue.status.value}, not in the backlog any more.")
    return await call.service.move(
        issue.id, IssueStatus.TODO, call.actor, f"promoted by {call.actor}"
    )


def promoted(issue: Issue) -> str:
    return f"⬆️ {issue.id} is in {issue.assignee_id}'s inbox now."


async def promote_from_list(call: Call, issue: Issue, scope: str) -> str:
    try:
        issue = await promote(call, issue)
        answer = promoted(issue)
    finally:
        text, keyboard = await backlog_view(call, list_scope(call, scope))
        await edit_html(call.update, text, keyboard)
    call.note(answer)
    return answer


def list_scope(call: Call, arg: str) -> str | None:
    """The company a list button's arg names (keyboards.scoped), or None for all (`*`)."""
    if arg in ("", "*"):
        return None
    for c in call.desk.config.companies:
        if keyboards.arg_names(arg, c.id):
            return c.id
    raise Stale("That list's company is no longer in the config. Send the command again.")


BACKLOG_LIMIT = 30


async def backlog_view(call: Call, company: str | None) -> tuple[str, InlineKeyboardMarkup | None]:
    found = await call.service.backlog(company, limit=BACKLOG_LIMIT + 1)
    shown = found[:BACKLOG_LIMIT]
    keyboard = (
        keyboards.backlog_keyboard(shown, company or "*") if call.role >= Role.OPERATOR else None
    )
    return routines_view.backlog_list(shown, company, len(found) > BACKLOG_LIMIT), keyboard
