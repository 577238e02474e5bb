"""Button presses: decode, re-authorise, look up in the store, act, edit the card in place.

Callback data grants nothing: the person pressing is checked against their role now (a card in
a group chat can be pressed by anyone there), and what it names is read fresh from the store.
A press on something gone, changed or expired gets a polite answer instead of an action.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from telegram import Update
from telegram.ext import ContextTypes

from bot import cards, keyboards, render
from bot.access import Role, button_need
from bot.alert_buttons import on_alert
from bot.commands_admin import (
    broken_agents,
    reset_many,
    rotate_all_and_recover,
)
from bot.desk import Call, desk_of, edit_html
from bot.keyboards import Kind, Press
from bot.keyboards import StaleButton as Stale
from core.auth.rotation import rotate_agent
from core.errors import FleetbotError
from core.models import Agent, Issue, IssueStatus

ANSWER_LIMIT = 200  # Telegram's limit on a callback answer's text
_USED_KEY = "fleetbot.used_confirms"

Action = Callable[[Call, Press], Awaitable[str]]


def answer_text(text: str) -> str:
    return render.clip(text, ANSWER_LIMIT)


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
    desk = desk_of(context)
    role = desk.access.role(user.id)
    call = Call(desk, update, context, user.id, role)
    result, target, action = "ok", "", "button"
    answer, alert = "", False
    try:
        press = keyboards.decode(query.data)
        target, action = press.ref, f"button.{press.kind.value}.{press.verb}"
        need = button_need(press.kind.value, press.verb, press.arg, press.ref)
        if role < need:
            result, answer, alert = "refused", refusal_text(user.id, role, need), True
            return
        handler = _HANDLERS.get(press.kind)
        if handler is None:  # a form button after its form closed
            raise Stale("This form is closed (filed, cancelled or timed out). Send /issue again.")
        answer = await handler(call, press)
    except Stale as exc:
        result, answer, alert = "stale", exc.reason, True
    except FleetbotError as exc:
        result, answer, alert = f"error:{exc.code}", exc.message, True
    except Exception:
        result = "crashed"
        raise
    finally:
        detail: dict[str, object] = {"chat": call.chat_id, "role": role.label, "data": query.data}
        if call.notes:
            detail["did"] = "; ".join(call.notes)
        await desk.audit(user.id, action, target, result, detail)
        # Answered last, so whoever sees the answer can rely on the audit row being there.
        if result != "crashed":
            await query.answer(answer_text(answer) if answer else None, show_alert=alert)


# -- agent cards ------------------------------------------------------------------------------


async def find_agent(call: Call, ref: str) -> Agent:
    if not ref.startswith("~"):
        agent = await call.service.maybe_agent(ref)
    else:
        # A digest of an id too long for the callback data: find whose it is.
        agents = await call.service.agents()
        agent = next((a for a in agents if keyboards.arg_names(ref, a.id)), None)
    if agent is None:
        raise Stale("That agent is no longer in the fleet. /agents lists the current ones.")
    return agent


async def on_agent(call: Call, press: Press) -> str:
    agent = await find_agent(call, press.ref)
    desk, actor = call.desk, call.actor
    if press.verb == "runs":
        text, keyboard = await cards.runs_card(desk, agent)
        await edit_html(call.update, text, keyboard)
        return ""
    answer = ""
    try:
        if press.verb == "reset":
            agent = await call.service.reset(agent.id, actor)
            answer = f"♻️ {agent.id} is idle again and woken."
        elif press.verb == "pause":
            agent = await call.service.pause(agent.id, actor)
            answer = f"⏸ {agent.id} is paused."
        elif press.verb == "resume":
            agent = await call.service.resume(agent.id, actor)
            answer = f"▶️ {agent.id} is back on its heartbeat."
        elif press.verb == "wake":
            agent = await call.service.wake(agent.id, actor)
            answer = f"⏰ Woke {agent.id}."
        elif press.verb == "rotate":
            check = await rotate_agent(desk.fleet.auth, call.service, agent.id, actor)
            answer = (
                f"🔑 New token for {agent.id}; the old one is revoked."
                if check.ok
                else f"Rotated, but the new token fails: {check.code}"
            )
        elif press.verb != "show":
            raise Stale("This button is from another fleetbot version. Send /agent again.")
    finally:
        # Whatever happened, the card shows the agent as it is now, with buttons to match.
        fresh = await call.service.maybe_agent(agent.id)
        if fresh is not None:
            text, keyboard = await cards.agent_card(desk, fresh, call.role)
            await edit_html(call.update, text, keyboard)
    call.note(answer or press.verb)
    return answer


# -- issue cards ------------------------------------------------------------------------------


async def find_issue(call: Call, ref: str) -> Issue:
    try:
        return await call.service.issue(ref)
    except FleetbotError:
        raise Stale("That issue no longer exists. /issues lists the current ones.") from None


async def on_issue(call: Call, press: Press) -> str:
    issue = await find_issue(call, press.ref)
    actor = call.actor
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
        elif press.verb != "show":
            raise Stale("This button is from another fleetbot version. Send /issues again.")
    finally:
        fresh = await call.service.issue(issue.id)
        text, keyboard = await cards.issue_card(call.desk, fresh, call.role)
        await edit_html(call.update, text, keyboard)
    call.note(answer or press.verb)
    return answer


# -- confirmations of bulk actions --------------------------------------------------------------


def _issued_at(arg: str) -> int:
    """The time a confirmation button was made, from its data; 0 (long expired) if unreadable.
    Callback data comes from the client and may hold anything ("²" passes isdigit(), not int())."""
    return int(arg) if arg.isascii() and arg.isdigit() else 0


async def on_confirm(call: Call, press: Press) -> str:
    query = call.update.callback_query
    assert query is not None
    message = query.message
    # Confirmations already used, by message, so a quick double tap acts once. Only ones
    # young enough to be pressed are kept; older ones fail the age check anyway.
    used: dict[tuple[int, int], float] = call.context.bot_data.setdefault(_USED_KEY, {})
    for old in [k for k, at in used.items() if call.now - at > call.desk.confirm_ttl]:
        del used[old]
    key = (message.chat.id, message.message_id) if message is not None else (0, 0)
    if key in used:
        raise Stale("That was already done.")
    issued = _issued_at(press.arg)
    if call.now - issued > call.desk.confirm_ttl:
        await edit_html(
            call.update,
            "⌛ This confirmation expired; nothing was changed. Send the command again.",
        )
        raise Stale("This confirmation expired. Send the command again.")
    if press.verb == "no":
        used[key] = issued
        await edit_html(call.update, "Cancelled; nothing was changed.")
        return "Cancelled"
    if press.verb != "yes":
        raise Stale("This button is from another fleetbot version.")
    used[key] = issued
    if press.ref == "reset_all":
        broken = await broken_agents(call.desk)
        if not broken:
            await edit_html(call.update, "✅ Nothing to reset any more: no agent is broken.")
            return "Nothing to reset"
        report = await reset_many(call.desk, broken, call.actor)
        call.note(f"reset {len(report.done)}, failed {len(report.failed)}")
        await edit_html(call.update, report.text())
        return f"Reset {len(report.done)} of {len(broken)}"
    if press.ref == "rotate_all":
        await edit_html(call.update, "🔑 Rotating every key and token…")
        text = await rotate_all_and_recover(call.desk, call.actor)
        call.note("rotated all")
        await edit_html(call.update, text)
        return "Rotated all tokens"
    raise Stale("This confirmation is for an action this fleetbot does not have.")


_HANDLERS: dict[Kind, Action] = {
    Kind.AGENT: on_agent,
    Kind.ISSUE: on_issue,
    Kind.CONFIRM: on_confirm,
    Kind.ALERT: on_alert,
}
