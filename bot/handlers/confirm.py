"""The "are you sure?" buttons of bulk actions: `/reset all` and `/rotate all`.

A confirmation acts once (a quick double tap does not run it twice) and expires after
`Desk.confirm_ttl` seconds; what it acts on is read fresh from the store when it is pressed.
"""

from __future__ import annotations

from bot.desk import Call, edit_html
from bot.handlers.agents import broken_agents, reset_many
from bot.handlers.auth import rotate_all_and_recover
from bot.views.keyboards import Press
from bot.views.keyboards import StaleButton as Stale

_USED_KEY = "fleetbot.used_confirms"


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
