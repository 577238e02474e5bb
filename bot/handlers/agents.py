"""The agents: /agents /agent /role /reset /pause /resume /wake, and presses on agent cards.

`/reset all` only sends an "are you sure?" with a button (bot.handlers.confirm), which re-checks
the role and re-reads the store before it acts. After a press on an agent card, the card is
edited to show the agent as it is now.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot import args
from bot.access import guarded
from bot.desk import Call, Desk, edit_html
from bot.views import cards, keyboards, render
from bot.views.keyboards import Press, StaleButton as Stale
from core import Agent, AgentStatus, FleetbotError, rotate_agent

BROKEN = (AgentStatus.ERROR, AgentStatus.UNAUTHENTICATED)


@guarded("agents")
async def agents(call: Call) -> None:
    """Agents with their status, grouped by company; in a team chat, that team's. Idle agents
    whose runtime is down show as unreachable, with the target and why."""
    company = args.optional_word(call.rest, "company") or call.desk.chat_company(call.chat_id)
    found = await call.service.agents(company)
    down = call.desk.fleet.runtime_watch.unreachable(found)
    await call.reply(render.agent_list(found, await call.service.companies(), unreachable=down))


@guarded("agent")
async def agent(call: Call) -> None:
    """One agent's card with its buttons."""
    found = await call.service.agent(args.one_word(call.rest, "agent"))
    text, keyboard = await cards.agent_card(call.desk, found, call.role)
    await call.reply(text, keyboard)


@guarded("role")
async def role(call: Call) -> None:
    """Change an agent's role (and with it its skills allowlist); survives restarts."""
    agent_id, new_role = args.two_words(call.rest, "agent", "role")
    before = await call.service.agent(agent_id)
    agent = await call.service.set_role(agent_id, new_role, call.actor)
    call.note(f"{agent.id}: {before.role} -> {agent.role}")
    await _reply_with_card(
        call,
        agent,
        f"🎭 {render.esc(agent.id)} is now <b>{render.esc(agent.role)}</b> "
        f"(was {render.esc(before.role)}).",
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
            call.confirm_keyboard("reset_all", f"♻️ Reset {render.count(len(broken), 'agent')}"),
        )
        return
    agent = await call.service.reset(target, call.actor)
    call.note(f"reset {agent.id}")
    await _reply_with_card(call, agent, f"♻️ {render.esc(agent.id)} is idle again and woken.")


@guarded("pause")
async def pause(call: Call) -> None:
    """Stop an agent's heartbeats until /resume."""
    agent_id, reason = args.word_and_rest(call.rest, "agent")
    agent = await call.service.pause(agent_id, call.actor, reason)
    call.note(f"paused {agent.id}")
    await _reply_with_card(call, agent, f"⏸ {render.esc(agent.id)} is paused.")


@guarded("resume")
async def resume(call: Call) -> None:
    """Restart a paused agent's heartbeats."""
    agent = await call.service.resume(args.one_word(call.rest, "agent"), call.actor)
    call.note(f"resumed {agent.id}")
    await _reply_with_card(call, agent, f"▶️ {render.esc(agent.id)} is back on its heartbeat.")


@guarded("wake")
async def wake(call: Call) -> None:
    """Run the agent's heartbeat now: it picks up work if its inbox has any."""
    agent = await call.service.wake(args.one_word(call.rest, "agent"), call.actor)
    call.note(f"woke {agent.id}")
    inbox = await call.service.inbox(agent.id)
    what = f"{render.count(len(inbox), 'open issue')} in its inbox" if inbox else "an empty inbox"
    await call.reply(f"⏰ Woke {render.esc(agent.id)} ({what}).")


async def _reply_with_card(call: Call, agent: Agent, headline: str) -> None:
    """`headline` (HTML) above the agent's card, with the buttons this person may press."""
    text, keyboard = await cards.agent_card(call.desk, agent, call.role)
    await call.reply(f"{headline}\n\n{text}", keyboard)


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
