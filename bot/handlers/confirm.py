"""The taps on "are you sure?" buttons: `/reset all`, `/rotate all`, and removing a routine
from the /routines list.

The button carries only the id of a confirmation the desk keeps (bot.confirmations): a tap acts
once, from the chat it was asked in, before it expires, and only for someone with the role its
action needs. Anything else (a second tap, a late one, a made-up id) changes nothing and gets a
polite answer. What the action acts on is read fresh from the store when it is tapped.
"""

from __future__ import annotations

from bot.desk import Call, edit_html
from bot.handlers.agents import broken_agents, reset_many
from bot.handlers.auth import rotate_all_and_recover
from bot.handlers.queues import REMOVE_ROUTINE, on_remove_confirmed
from bot.roles import Role, button_need
from bot.views.keyboards import Kind, Press, StaleButton as Stale

GONE = "This confirmation expired or was never asked; send the command again."


def confirm_need(call: Call, press: Press) -> Role:
    """The role a tap on this confirmation needs: its action's, or the floor if it is gone."""
    entry = call.desk.confirmations.find(press.ref, call.chat_id, call.now)
    return button_need(Kind.CONFIRM.value, entry.action if entry is not None else "")


async def on_confirm(call: Call, press: Press) -> str:
    if press.verb not in ("yes", "no"):
        raise Stale("This button is from another fleetbot version.")
    entry = call.desk.confirmations.take(press.ref, call.chat_id, call.now)
    if entry is None:
        raise Stale(GONE)
    call.note(f"{entry.action} asked by tg:{entry.user_id}")
    if entry.action == REMOVE_ROUTINE:  # its prompt sits in the list, which it redraws
        return await on_remove_confirmed(call, entry, press.verb == "yes")
    if press.verb == "no":
        await edit_html(call.update, "Cancelled; nothing was changed.")
        return "Cancelled"
    if entry.action == "reset_all":
        broken = await broken_agents(call.desk)
        if not broken:
            await edit_html(call.update, "✅ Nothing to reset any more: no agent is broken.")
            return "Nothing to reset"
        report = await reset_many(call.desk, broken, call.actor)
        call.note(f"reset {len(report.done)}, failed {len(report.failed)}")
        await edit_html(call.update, report.text())
        return f"Reset {len(report.done)} of {len(broken)}"
    if entry.action == "rotate_all":
        await edit_html(call.update, "🔑 Rotating every key and token…")
        text = await rotate_all_and_recover(call.desk, call.actor)
        call.note("rotated all")
        await edit_html(call.update, text)
        return "Rotated all tokens"
    raise Stale("This confirmation is for an action this fleetbot does not have.")
