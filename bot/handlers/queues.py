"""Queues from the phone: /routines (list, add, pause, resume, run, remove, with buttons),
/priority, /backlog and /promote. The core decides and audits (core.queues.facade); this parses,
checks the role of the write subcommands, and draws.

/routines and /backlog are viewer commands, because listing is reading; their writing forms
(`/routines add …`, `/backlog ISSUE`) need the operator, checked here.
"""

from __future__ import annotations

from telegram import InlineKeyboardMarkup

from bot import args
from bot.access import guarded, refusal
from bot.confirmations import Pending
from bot.desk import Call, edit_html
from bot.handlers.issues import backlog_view, list_scope, promote as promote_issue, promoted
from bot.roles import Role
from bot.views import cards, keyboards, render, routines as view
from bot.views.keyboards import Press, StaleButton as Stale
from core import (
    AgentNotFound,
    CompanyNotFound,
    FleetbotError,
    InvalidInput,
    IssueStatus,
    Routine,
)

_VERBS = ("add", "pause", "resume", "run", "remove")
# Routines one list shows: three buttons each stay under Telegram's 100 per keyboard, and the
# lines under one message's 4096 characters, which an edit after a press must fit in.
ROUTINES_LIMIT = 12
REMOVE_ROUTINE = "remove_routine"  # the confirmation's action (bot.handlers.confirm)


async def _may_write(call: Call, what: str) -> bool:
    if call.role >= Role.OPERATOR:
        return True
    await call.reply(refusal(call.user_id, call.role, what, Role.OPERATOR))
    call.note("refused: needs operator")
    return False


async def routines_view(
    call: Call, company: str | None, removing: tuple[str, str] | None = None
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The list (the first ROUTINES_LIMIT, so it fits one message and one keyboard)."""
    found = await call.service.routines(company)
    shown = found[:ROUTINES_LIMIT]
    keyboard = keyboards.routines_keyboard(
        shown, company or "*", can_act=call.role >= Role.OPERATOR, removing=removing
    )
    return view.routine_list(shown, company, more=len(found) - len(shown)), keyboard


@guarded("routines")
async def routines(call: Call) -> None:
    """List (by company), or `add|pause|resume|run|remove …`."""
    parts = call.rest.split(maxsplit=1)
    verb = parts[0] if parts else ""
    rest = parts[1] if len(parts) == 2 else ""
    if verb.lower() not in _VERBS:
        company = args.optional_word(call.rest, "company") or call.desk.chat_company(call.chat_id)
        if company is not None:
            company = (await call.service.company(company)).id
        text, keyboard = await routines_view(call, company)
        await call.reply(text, keyboard)
        return
    verb = verb.lower()
    if not await _may_write(call, f"/routines {verb}"):
        return
    if verb == "add":
        await _add(call, rest)
        return
    ref = args.one_word(rest, "routine (R3 or its name)")
    if verb == "run":
        issue = await call.service.run_routine(ref, call.actor)
        call.note(f"ran {ref}: {issue.id}")
        text, keyboard = await cards.issue_card(call.desk, issue, call.role)
        sent = await call.reply(f"⏩ Filed <b>{issue.id}</b> now.\n\n{text}", keyboard)
        await cards.link_issue(call.desk, sent, issue.id)
        return
    done = await _act(call, verb, ref)
    if verb != "remove":
        done += f"\n\n{view.routine_line(await call.service.routine(ref))}"
    await call.reply(done)


async def _act(call: Call, verb: str, ref: str) -> str:
    if verb == "pause":
        r = await call.service.pause_routine(ref, call.actor)
        return f"⏸ {r.ref} {render.esc(r.name)} is paused: its due times pass without an issue."
    if verb == "resume":
        r = await call.service.resume_routine(ref, call.actor)
        return f"▶️ {r.ref} {render.esc(r.name)} is back on schedule."
    r = await call.service.remove_routine(ref, call.actor)
    return f"🗑 {r.ref} {render.esc(r.name)} is removed; its open issues stay."


async def _add(call: Call, rest: str) -> None:
    parsed = args.parse_routine(rest)
    scope = call.desk.chat_company(call.chat_id)
    if "@" in parsed.assignee:
        scope = None  # role@company names its own company
    try:
        r = await call.service.add_routine(
            name=parsed.name,
            schedule=parsed.schedule,
            assignee=parsed.assignee,
            title=parsed.title,
            body=parsed.body,
            priority=parsed.priority,
            timezone=parsed.timezone,
            company=scope,
            actor=call.actor,
        )
    except (InvalidInput, AgentNotFound, CompanyNotFound) as exc:  # the arguments were wrong
        raise args.UsageError(exc.message) from None
    call.note(f"added {r.ref} {r.name}")
    text, keyboard = await routines_view(call, r.company_id)
    await call.reply(f"🔁 Added <b>{r.ref}</b> {render.esc(r.name)}.\n\n{text}", keyboard)


async def on_routine(call: Call, press: Press) -> str:
    """A press on the /routines list: act, then redraw the same list. Remove only asks: the
    row turns into an "are you sure?" whose tap the desk keeps (bot.confirmations)."""
    scope = list_scope(call, press.arg)
    removing = None
    answer = ""
    try:
        if press.verb in ("pause", "resume"):
            answer = await _act(call, press.verb, press.ref)
        elif press.verb == "run":
            issue = await call.service.run_routine(press.ref, call.actor)
            answer = f"⏩ Filed {issue.id} now."
        elif press.verb == "remove":
            r = await _routine(call, press.ref)
            pending = call.confirm(
                REMOVE_ROUTINE, subject=f"{r.name}@{r.company_id}", scope=scope or "*"
            )
            removing = (r.ref, pending.id)
            answer = f"Tap “Yes, remove {r.ref}” to remove it for good."
        elif press.verb != "list":
            raise Stale("This button is from another fleetbot version. Send /routines again.")
    finally:
        text, keyboard = await routines_view(call, scope, removing)
        await edit_html(call.update, text, keyboard)
    call.note(answer or press.verb)
    return answer


async def on_remove_confirmed(call: Call, entry: Pending, yes: bool) -> str:
    """The tap on a routine's "are you sure?": remove it (or keep it), redraw the list."""
    answer = "Kept; nothing was changed."
    try:
        if yes:
            answer = await _act(call, "remove", entry.subject)
    finally:
        scope = None if entry.scope in ("", "*") else entry.scope
        text, keyboard = await routines_view(call, scope)
        await edit_html(call.update, text, keyboard)
    call.note(answer)
    return answer


async def _routine(call: Call, ref: str) -> Routine:
    try:
        return await call.service.routine(ref)
    except FleetbotError:
        raise Stale("That routine no longer exists. /routines lists the current ones.") from None


@guarded("priority")
async def priority(call: Call) -> None:
    """Change an open issue's priority (inboxes are worked by priority, then age)."""
    issue_id, level = args.two_words(call.rest, "issue", "priority")
    issue = await call.service.set_priority(issue_id, args.priority_word(level), call.actor)
    call.note(f"{issue.id}: {issue.priority.value}")
    text, keyboard = await cards.issue_card(call.desk, issue, call.role)
    await call.reply(f"Priority of {issue.id}: <b>{issue.priority.value}</b>.\n\n{text}", keyboard)


@guarded("backlog")
async def backlog(call: Call) -> None:
    """`/backlog [company]` lists it, with Promote buttons; `/backlog ISSUE` parks an issue."""
    word = args.optional_word(call.rest, "company or issue")
    if word is not None and args.ISSUE_ID.match(word):
        if not await _may_write(call, "/backlog ISSUE"):
            return
        issue = await call.service.move(word, IssueStatus.BACKLOG, call.actor, "parked")
        call.note(f"parked {issue.id}")
        text, keyboard = await cards.issue_card(call.desk, issue, call.role)
        await call.reply(
            f"🗂 {issue.id} is in the backlog: no heartbeat works it until it is promoted."
            f"\n\n{text}",
            keyboard,
        )
        return
    company = word or call.desk.chat_company(call.chat_id)
    if company is not None:
        company = (await call.service.company(company)).id
    text, keyboard = await backlog_view(call, company)
    await call.reply(text, keyboard)


@guarded("promote")
async def promote(call: Call) -> None:
    """Backlog → todo now; the assignee is woken with it."""
    issue = await call.service.issue(args.one_word(call.rest, "issue"))
    try:
        issue = await promote_issue(call, issue)
    except Stale as exc:
        raise args.UsageError(exc.reason) from None
    call.note(f"promoted {issue.id}")
    text, keyboard = await cards.issue_card(call.desk, issue, call.role)
    await call.reply(f"{promoted(issue)}\n\n{text}", keyboard)
