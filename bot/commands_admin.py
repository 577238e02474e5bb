"""The commands that change things: /issue (with arguments) /assign /role /reset /pause /resume
/wake /rotate /authcheck, and the bulk actions their confirm buttons run.

Bulk actions on many agents (`/reset all`, `/rotate all`) only send an "are you sure?" with a
button; the button handler re-checks the role and re-reads the store before it acts.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegram import InlineKeyboardMarkup

from bot import args, cards, keyboards, render
from bot.access import Role, guarded
from bot.desk import Call, Desk
from core.auth.rotation import record, rotate_agent, rotate_all, self_test_async
from core.durations import format_duration
from core.errors import FleetbotError
from core.models import Agent, AgentStatus, AuthReason

# Error codes meaning "the agent's credentials were refused": fixed by new tokens plus a reset.
AUTH_ERROR_CODES = frozenset({"agent_unauthorized", *(r.value for r in AuthReason)})
BROKEN = (AgentStatus.ERROR, AgentStatus.UNAUTHENTICATED)


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
    )
    call.note(f"filed {issue.id} for {issue.assignee_id}")
    text, keyboard = await cards.issue_card(call.desk, issue, call.role)
    await call.reply(
        f"📝 Filed <b>{issue.id}</b> for {render.esc(issue.assignee_id)}.\n\n{text}", keyboard
    )


@guarded("assign")
async def assign(call: Call) -> None:
    """Give an issue to another agent (or role); it gets a fresh attempt budget."""
    issue_id, assignee = args.two_words(call.rest, "issue", "assignee")
    issue = await call.service.assign(issue_id, assignee, call.actor)
    call.note(f"{issue.id} -> {issue.assignee_id}")
    text, keyboard = await cards.issue_card(call.desk, issue, call.role)
    await call.reply(
        f"👤 {issue.id} now goes to {render.esc(issue.assignee_id)}.\n\n{text}", keyboard
    )


@guarded("role")
async def role(call: Call) -> None:
    """Change an agent's role (and with it its skills allowlist); survives restarts."""
    agent_id, new_role = args.two_words(call.rest, "agent", "role")
    before = await call.service.agent(agent_id)
    agent = await call.service.set_role(agent_id, new_role, call.actor)
    call.note(f"{agent.id}: {before.role} -> {agent.role}")
    text, keyboard = await cards.agent_card(call.desk, agent, call.role)
    await call.reply(
        f"🎭 {render.esc(agent.id)} is now <b>{render.esc(agent.role)}</b> "
        f"(was {render.esc(before.role)}).\n\n{text}",
        keyboard,
    )


@guarded("reset")
async def reset(call: Call) -> None:
    """Back to idle and woken; `all` asks to confirm resetting every broken agent."""
    target = args.one_word(call.rest, "agent (or all)")
    if target.lower() == "all":
        broken = await broken_agents(call.desk)
        if not broken:
            await call.reply("✅ Nothing to reset: no agent is in error or unauthenticated.")
            return
        call.note(f"asked to confirm {len(broken)}")
        names = ", ".join(f"{a.id} ({a.status.value})" for a in broken[:20])
        more = f" and {len(broken) - 20} more" if len(broken) > 20 else ""
        await call.reply(
            f"♻️ Reset {render.count(len(broken), 'agent')}? {render.esc(names)}{more}.\n"
            "They go back to idle and are woken. An agent whose token still fails stays "
            "unauthenticated (rotate its token first).",
            keyboards.confirm_keyboard(
                "reset_all", f"♻️ Reset {render.count(len(broken), 'agent')}", call.now
            ),
        )
        return
    agent = await call.service.reset(target, call.actor)
    call.note(f"reset {agent.id}")
    text, keyboard = await cards.agent_card(call.desk, agent, call.role)
    await call.reply(f"♻️ {render.esc(agent.id)} is idle again and woken.\n\n{text}", keyboard)


@guarded("pause")
async def pause(call: Call) -> None:
    """Stop an agent's heartbeats until /resume."""
    agent_id, reason = args.word_and_rest(call.rest, "agent")
    agent = await call.service.pause(agent_id, call.actor, reason)
    call.note(f"paused {agent.id}")
    text, keyboard = await cards.agent_card(call.desk, agent, call.role)
    await call.reply(f"⏸ {render.esc(agent.id)} is paused.\n\n{text}", keyboard)


@guarded("resume")
async def resume(call: Call) -> None:
    """Restart a paused agent's heartbeats."""
    agent = await call.service.resume(args.one_word(call.rest, "agent"), call.actor)
    call.note(f"resumed {agent.id}")
    text, keyboard = await cards.agent_card(call.desk, agent, call.role)
    await call.reply(f"▶️ {render.esc(agent.id)} is back on its heartbeat.\n\n{text}", keyboard)


@guarded("wake")
async def wake(call: Call) -> None:
    """Run the agent's heartbeat now: it picks up work if its inbox has any."""
    agent = await call.service.wake(args.one_word(call.rest, "agent"), call.actor)
    call.note(f"woke {agent.id}")
    inbox = await call.service.inbox(agent.id)
    what = f"{render.count(len(inbox), 'open issue')} in its inbox" if inbox else "an empty inbox"
    await call.reply(f"⏰ Woke {render.esc(agent.id)} ({what}).")


@guarded("rotate")
async def rotate(call: Call) -> None:
    """New token for one agent (its old one dies at once), or `all`: a new key for everyone."""
    target = args.one_word(call.rest, "agent (or all)")
    if target.lower() == "all":
        call.note("asked to confirm")
        await call.reply(*await rotate_confirm(call.desk, call.now))
        return
    check = await rotate_agent(call.desk.fleet.auth, call.service, target, call.actor)
    call.note(f"rotated {check.agent_id}: {check.code or 'ok'}")
    if check.ok:
        await call.reply(
            f"🔑 New token for <code>{render.esc(check.agent_id)}</code> written to its token "
            "file and verified; the old one is revoked."
        )
    else:
        await call.reply(
            f"⚠️ Rotated, but the new token does not verify:\n{render.check_line(check)}"
        )


@guarded("authcheck")
async def authcheck(call: Call) -> None:
    """Verify every agent's token file now, as its next heartbeat would, and record the result
    (failing idle agents become unauthenticated; fixed ones come back and are woken)."""
    args.no_args(call.rest)
    agents = await call.service.agents()
    report = await self_test_async(call.desk.fleet.auth, agents)
    back = await record(call.service, agents, report)
    call.note(report.summary())
    text = render.auth_report(report)
    if back:
        text += "\n✅ Back to work: " + render.esc(", ".join(back))
    keyboard = None
    if not report.ok and call.role >= Role.OWNER:
        keyboard = keyboards.confirm_keyboard("rotate_all", "🔑 Rotate all tokens", call.now)
    await call.reply(text, keyboard)


# -- bulk actions (run by confirm buttons and alert fixes) ------------------------------------


async def rotate_confirm(desk: Desk, now: float) -> tuple[str, InlineKeyboardMarkup]:
    """The "are you sure?" for rotating every key and token."""
    grace = format_duration(desk.config.auth.rotation_grace)
    total = len(await desk.service.agents())
    text = (
        f"🔑 Rotate every key and token? A new signing key becomes active, the old one still "
        f"verifies for {grace}, and all {render.count(total, 'token file')} are rewritten and "
        "checked. Agents refused for bad credentials are reset."
    )
    return text, keyboards.confirm_keyboard("rotate_all", "🔑 Rotate all tokens", now)


async def broken_agents(desk: Desk, ids: set[str] | None = None) -> list[Agent]:
    found = [a for a in await desk.service.agents() if a.status in BROKEN]
    return [a for a in found if ids is None or a.id in ids]


@dataclass(frozen=True, slots=True)
class ResetReport:
    done: list[str]
    failed: list[tuple[str, str]]  # (agent id, why)

    def text(self) -> str:
        lines = [f"♻️ Reset {len(self.done)} of {len(self.done) + len(self.failed)} agents."]
        if self.done:
            lines.append("Back to idle: " + render.esc(", ".join(self.done)))
        for agent_id, why in self.failed:
            lines.append(f"⚠️ <code>{render.esc(agent_id)}</code>: {render.esc(why)}")
        return "\n".join(lines)


async def reset_many(desk: Desk, agents: list[Agent], actor: str) -> ResetReport:
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    for agent in agents:
        try:
            await desk.service.reset(agent.id, actor)
        except FleetbotError as exc:
            failed.append((agent.id, exc.message))
        else:
            done.append(agent.id)
    return ResetReport(done, failed)


async def rotate_all_and_recover(desk: Desk, actor: str) -> str:
    """Rotate every key and token, then reset the agents whose runs failed on credentials:
    the fix for a fleet-wide 401 outage in one step."""
    report = await rotate_all(desk.fleet.auth, desk.service, actor)
    stuck = [
        a
        for a in await broken_agents(desk)
        if a.status is AgentStatus.ERROR and a.reason_code in AUTH_ERROR_CODES
    ]
    text = render.auth_report(report, "Rotated all tokens")
    if stuck:
        recovered = await reset_many(desk, stuck, actor)
        text += "\n" + recovered.text()
    still = await broken_agents(desk)
    if still and report.ok:
        text += "\nStill broken for other reasons: " + render.esc(", ".join(a.id for a in still))
    elif not still:
        text += "\n✅ Every agent is back."
    return text
