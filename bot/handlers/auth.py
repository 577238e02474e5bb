"""Tokens and runtimes: /rotate and /authcheck, and rotating everything as the one fix for a
fleet-wide 401.

/authcheck answers both self-tests, as `fleetbot check` does: every agent's token, and every
agent's runtime (one line per failing target, naming its agents).

`/rotate all` only sends an "are you sure?" with a button (bot.handlers.confirm).
"""

from __future__ import annotations

from telegram import InlineKeyboardMarkup

from bot import args
from bot.access import guarded
from bot.desk import Call, Desk
from bot.handlers.agents import broken_agents, reset_many
from bot.roles import Role
from bot.views import render
from core import (
    AgentStatus,
    AuthReason,
    format_duration,
    record_self_test as record,
    rotate_agent,
    rotate_all,
    self_test_async,
)

# Error codes meaning "the agent's credentials were refused": fixed by new tokens plus a reset.
AUTH_ERROR_CODES = frozenset({"agent_unauthorized", *(r.value for r in AuthReason)})


@guarded("rotate")
async def rotate(call: Call) -> None:
    """New token for one agent (its old one dies at once), or `all`: a new key for everyone."""
    target = args.one_word(call.rest, "agent (or all)")
    if target.lower() == "all":
        call.note("asked to confirm")
        await call.reply(*await rotate_confirm(call))
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
    (failing idle agents become unauthenticated; fixed ones come back and are woken); then
    probe every agent's runtime, which raises or resolves the runtime_unreachable alerts."""
    args.no_args(call.rest)
    agents = await call.service.agents()
    report = await self_test_async(call.desk.fleet.auth, agents)
    back = await record(call.service, agents, report)
    runtimes = await call.desk.fleet.monitors.check_runtimes(why=f"/authcheck by {call.actor}")
    call.note(f"{report.summary()}; {runtimes.summary()}")
    text = render.auth_report(report)
    if back:
        text += "\n✅ Back to work: " + render.esc(", ".join(back))
    text += "\n\n" + render.runtime_report(runtimes)
    keyboard = None
    if not report.ok and call.role >= Role.OWNER:
        keyboard = call.confirm_keyboard("rotate_all", "🔑 Rotate all tokens")
    await call.reply(text, keyboard)


async def rotate_confirm(call: Call) -> tuple[str, InlineKeyboardMarkup]:
    """The "are you sure?" for rotating every key and token."""
    grace = format_duration(call.desk.config.auth.rotation_grace)
    total = len(await call.service.agents())
    text = (
        f"🔑 Rotate every key and token? A new signing key becomes active, the old one still "
        f"verifies for {grace}, and all {render.count(total, 'token file')} are rewritten and "
        "checked. Agents refused for bad credentials are reset."
    )
    return text, call.confirm_keyboard("rotate_all", "🔑 Rotate all tokens")


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
