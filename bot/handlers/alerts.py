"""Alerts: /alerts, /mute, /unmute over the core's AlertBook, and presses on alert messages.

Alert buttons are `v1:a:<alert id>:ack`, `…:mute:<1h|4h|24h>` and `…:fix:<fix>`. The alert is
read from the AlertBook and each fix acts only on the alert's live members that the chat may see
(a team chat: its own company's). The alert message itself is edited by the notifier when the
alert changes, so these handlers answer the press and post results below it. The "File issue"
fix opens the guided form (bot.handlers.guided). "Check again" probes the runtime of the
alert's agents now: the alert resolves at once if it passes.
"""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import args
from bot.access import guarded
from bot.desk import Call, Desk
from bot.handlers.agents import broken_agents, reset_many
from bot.handlers.auth import rotate_confirm
from bot.views import cards, keyboards, render
from bot.views.alerts import MUTE_CHOICES
from bot.views.keyboards import Kind, Press, StaleButton as Stale, button
from core import (
    AgentStatus,
    Alert,
    AlertMember,
    AlertNotFound,
    AlertState,
    Fix,
    IssueStatus,
    format_duration,
)

MAX_ALERT_ROWS = 6  # alerts that get their own buttons in /alerts
MAX_CARDS = 5  # issue cards a "Reassign" press posts at most


async def firing_by_company(desk: Desk) -> dict[str, int]:
    """Alerts still firing per company, muted ones included (an acknowledged one has a human
    on it); an alert counts once for each company among its live members."""
    counts: dict[str, int] = {}
    for alert in await desk.alerts.firing():
        if alert.state is AlertState.ACKNOWLEDGED:
            continue
        for company in {m.company_id for m in alert.active_members if m.company_id}:
            counts[company] = counts.get(company, 0) + 1
    return counts


@guarded("alerts")
async def alerts(call: Call) -> None:
    """Alerts open now, and active mutes; firing ones get Acknowledge and Mute buttons."""
    args.no_args(call.rest)
    book = call.desk.alerts
    found = await book.firing()
    rows: list[list[InlineKeyboardButton]] = []
    for alert in found[:MAX_ALERT_ROWS]:
        if alert.state is AlertState.FIRING:
            a = str(alert.id)
            rows.append(
                [
                    button(f"👍 Ack #{a}", Kind.ALERT, a, "ack"),
                    button(f"🔕 #{a} 4h", Kind.ALERT, a, "mute", "4h"),
                ]
            )
    keyboard = InlineKeyboardMarkup(rows) if rows else None
    await call.reply(render.alert_list(found, await book.mutes(), call.now), keyboard)


@guarded("mute")
async def mute(call: Call) -> None:
    """Silence an alert, a kind, an agent, a company or an issue for a while."""
    parsed = args.parse_mute(call.rest)
    book = call.desk.alerts
    found = await book.mute(parsed.target, call.now + parsed.seconds, call.actor, parsed.reason)
    call.note(f"m{found.id} on {found.target}")
    await call.reply(
        f"🔕 Muted <code>{render.esc(found.target)}</code> for "
        f"{format_duration(parsed.seconds)}, until {render.stamp(found.until)} "
        f"(<code>m{found.id}</code>). /unmute m{found.id} lifts it."
    )


@guarded("unmute")
async def unmute(call: Call) -> None:
    """Lift a mute by its id (m3), every mute on an alert (42), or the mutes on a target."""
    target = args.one_word(call.rest, "mute id, alert id or target")
    lifted = await call.desk.alerts.unmute(target, call.actor)
    call.note(", ".join(f"m{m.id}" for m in lifted))
    names = ", ".join(f"m{m.id} ({m.target})" for m in lifted)
    await call.reply(f"🔔 Lifted {render.count(len(lifted), 'mute')}: {render.esc(names)}.")


async def on_alert(call: Call, press: Press) -> str:
    book = call.desk.alerts
    try:
        alert = await book.get(press.ref)
    except AlertNotFound:
        raise Stale("That alert is gone. /alerts lists the open ones.") from None
    if press.verb == "ack":
        if alert.state is AlertState.RESOLVED:
            raise Stale(f"Alert #{alert.id} is already resolved; nothing to acknowledge.")
        await book.ack(alert.id, call.actor)
        call.note(f"acked #{alert.id}")
        return f"👍 Acknowledged #{alert.id}: no more reminders."
    if press.verb == "mute":
        seconds = MUTE_CHOICES.get(press.arg)
        if seconds is None:
            raise Stale("This mute button is from another fleetbot version. Use /mute.")
        if alert.state is AlertState.RESOLVED:
            raise Stale(f"Alert #{alert.id} is already resolved; nothing to mute.")
        mute = await book.mute(f"alert:{alert.id}", call.now + seconds, call.actor, "from Telegram")
        call.note(f"muted #{alert.id} for {press.arg} (m{mute.id})")
        return f"🔕 Muted #{alert.id} for {press.arg}. /unmute m{mute.id} to undo."
    if press.verb == "fix":
        return await _fix(call, alert, press.arg)
    raise Stale("This alert button is from another fleetbot version.")


def visible_members(call: Call, alert: Alert) -> tuple[AlertMember, ...]:
    """The live members this chat may act on: all in a DM, one company's in its team chat."""
    return tuple(m for m in alert.members_for(call.desk.chat_company(call.chat_id)) if m.active)


async def _fix(call: Call, alert: Alert, name: str) -> str:
    try:
        fix = Fix(name)
    except ValueError:
        raise Stale("This fix button is from another fleetbot version.") from None
    if fix not in alert.fixes:
        raise Stale(f"Alert #{alert.id} does not offer that fix.")
    if alert.state is AlertState.RESOLVED:
        raise Stale(f"Alert #{alert.id} is already resolved; nothing to fix.")
    members = visible_members(call, alert)
    if fix is Fix.ROTATE:
        text, keyboard = await rotate_confirm(call)
        await call.reply(text, keyboard)
        call.note(f"#{alert.id}: asked to confirm rotate all")
        return "Confirm the rotation below."
    if fix is Fix.RESET:
        ids = {m.agent_id for m in members if m.agent_id}
        broken = await broken_agents(call.desk, ids)
        if not broken:
            return "Nothing to reset: those agents are not in error any more."
        report = await reset_many(call.desk, broken, call.actor)
        call.note(f"#{alert.id}: reset {len(report.done)} of {len(broken)}")
        await call.reply(report.text())
        return f"Reset {len(report.done)} of {len(broken)}."
    if fix is Fix.PAUSE:
        return await _pause(call, alert, members)
    if fix is Fix.RECHECK:
        return await _recheck(call, alert, members)
    if fix is Fix.REASSIGN:
        return await _reassign(call, alert, members)
    # Fix.FILE is taken by the guided form's entry point; reaching here means it was refused.
    return "Send /issue to file work for this company."


async def _pause(call: Call, alert: Alert, members: tuple[AlertMember, ...]) -> str:
    companies = {m.subject.partition(":")[2] for m in members if m.subject.startswith("company:")}
    ids = {m.agent_id for m in members if m.agent_id}
    for company in companies:
        ids |= {a.id for a in await call.service.agents(company)}
    paused = []
    for agent in await call.service.agents():
        if agent.id in ids and agent.status not in (AgentStatus.PAUSED, AgentStatus.RUNNING):
            await call.service.pause(agent.id, call.actor, f"paused from alert #{alert.id}")
            paused.append(agent.id)
    call.note(f"#{alert.id}: paused {len(paused)}")
    if not paused:
        return "Nothing to pause: those agents are paused or running."
    await call.reply(
        f"⏸ Paused {render.count(len(paused), 'agent')}: {render.esc(', '.join(paused))}. "
        "/resume AGENT brings one back."
    )
    return f"Paused {len(paused)}."


async def _recheck(call: Call, alert: Alert, members: tuple[AlertMember, ...]) -> str:
    ids = {m.agent_id for m in members if m.agent_id}
    report = await call.desk.fleet.monitors.check_runtimes(ids, why=f"alert #{alert.id}")
    call.note(f"#{alert.id}: {report.summary()}")
    if report.ok:
        return f"✅ Reachable again ({report.summary()}); alert #{alert.id} is resolved."
    await call.reply(render.runtime_report(report, f"Alert #{alert.id}, checked again"))
    return f"Still down: {report.summary()}."


async def _reassign(call: Call, alert: Alert, members: tuple[AlertMember, ...]) -> str:
    issue_ids = [m.issue_id for m in members if m.issue_id]
    for m in members:
        if m.agent_id:
            issue_ids += [
                i.id
                for i in await call.service.inbox(m.agent_id)
                if i.status is IssueStatus.IN_PROGRESS
            ]
    shown = 0
    for issue_id in dict.fromkeys(issue_ids):
        issue = await call.service.issue(issue_id)
        if issue.status.terminal or shown >= MAX_CARDS:
            continue
        text, _ = await cards.issue_card(call.desk, issue, call.role)
        agents = await call.service.agents(issue.company_id)
        await call.reply(
            text + "\n\n👤 <b>Who should take it?</b>", keyboards.assign_keyboard(issue, agents)
        )
        shown += 1
    call.note(f"#{alert.id}: offered {shown} issue(s) to reassign")
    return "Pick new assignees below." if shown else "No open issue to reassign any more."
