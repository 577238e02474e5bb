"""The alert commands: /alerts, /mute, /unmute, over the core's AlertBook."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import args, render
from bot.access import guarded
from bot.desk import Call, Desk
from bot.keyboards import Kind, button
from core.alerting.book import AlertState
from core.durations import format_duration

MAX_ALERT_ROWS = 6  # alerts that get their own buttons in /alerts


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
