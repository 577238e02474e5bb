"""An alert as a Telegram message: HTML text and its inline keyboard; summaries too.

Pure functions of an `Alert`, the audience and `now`. Everything from outside (names, reasons,
summaries) is escaped with `esc`; what agents and runtimes wrote (reasons, summaries) first has
its secrets masked by `scrub`, as the logs do. Buttons carry `v1:a:<alert id>:<verb>[:<arg>]`
(encoded by bot.views.keyboards): `ack`, `mute:1h|4h|24h`, `fix:<reset|rotate|file|reassign|
pause|recheck>`; the alert handlers (bot.handlers.alerts) read exactly this.

A digest (render_digest, digest_keyboard) is one message for a chat's backlog of alerts after an
outage (core.alerting.outbox, "Backlogs"): counts by kind, the worst first, each alert as its id
and subjects on one line (resolved ones struck through), and the alerts' own fix buttons.

A runtime_unreachable alert reads "what is down, its agents, the fix": its cause is the target
(one alert per dead gateway or endpoint), shown on its own line, and each distinct problem is
followed by the agents it hits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.redaction import scrub
from bot.views.html import MAX_TEXT, esc
from bot.views.keyboards import Kind, encode
from core import Alert, AlertKind, AlertMember, AlertState, Fix, Severity, utc

_BODY_BUDGET = 3300  # characters for the member list; the rest is header, fix and footer
# The Mute buttons: the label each carries in its callback data, and for how long it mutes.
MUTE_CHOICES = {"1h": 3600.0, "4h": 4 * 3600.0, "24h": 86400.0}
FIX_LABELS = {
    Fix.RESET: "♻️ Reset",
    Fix.ROTATE: "🔑 Rotate tokens",
    Fix.FILE: "📝 File issue",
    Fix.REASSIGN: "👤 Reassign",
    Fix.PAUSE: "⏸ Pause heartbeats",
    Fix.RECHECK: "🔄 Check again",
}
# What each fix does, in the message, so a reader knows before tapping.
FIX_HINTS = {
    Fix.RESET: "reset the agents once the cause is fixed",
    Fix.ROTATE: "rotate the tokens (one rotation fixes every agent listed)",
    Fix.FILE: "file an issue so the agents have work",
    Fix.REASSIGN: "give the issues to another agent",
    Fix.PAUSE: "pause heartbeats until there is work",
    Fix.RECHECK: "once it is back, check again (the alert also resolves by itself then)",
}
KIND_ICON = {
    AlertKind.AGENT_ERROR: "🔴",
    AlertKind.AGENT_UNAUTHENTICATED: "🔑",
    AlertKind.AGENT_STUCK: "⏳",
    AlertKind.AGENT_SILENT: "🔇",
    AlertKind.QUEUE_EMPTY: "📭",
    AlertKind.ISSUE_BLOCKED: "⛔",
    AlertKind.RECOVERY_LOOP: "🔁",
    AlertKind.BUDGET: "💸",
    AlertKind.RUNTIME_UNREACHABLE: "📡",
    AlertKind.DELIVERY: "📡",
    AlertKind.QUESTION: "❓",
}
_AGENT_KINDS = (
    AlertKind.AGENT_ERROR,
    AlertKind.AGENT_UNAUTHENTICATED,
    AlertKind.AGENT_STUCK,
    AlertKind.AGENT_SILENT,
    AlertKind.RUNTIME_UNREACHABLE,
    AlertKind.DELIVERY,
)


def _time(ts: float) -> str:
    return utc(ts).strftime("%H:%M UTC")


def callback(alert_id: int, verb: str, arg: str = "") -> str:
    return encode(Kind.ALERT, str(alert_id), verb, arg)


def _members_html(members: Sequence[AlertMember], *, names_after: bool = False) -> list[str]:
    """Members grouped by what is wrong with them, names listed once per reason, cut to fit;
    `names_after`: the reason as a sentence, then "Agents: …" (a runtime's problem and fix)."""
    groups: dict[str, list[AlertMember]] = {}
    for m in members:
        groups.setdefault(m.detail, []).append(m)
    lines: list[str] = []
    used = 0
    for detail, group in groups.items():
        names: list[str] = []
        for m in group:
            name = esc(m.label) if m.active else f"<s>{esc(m.label)}</s> ✓"
            if used + len(name) > _BODY_BUDGET:
                break
            names.append(name)
            used += len(name) + 2
        more = len(group) - len(names)
        tail = f" … and {more} more" if more else ""
        head = esc(scrub(detail)[:300])
        used += len(head)
        if names_after:
            lines.append(f"• {head}\n  Agents: {', '.join(names)}{tail}")
        elif len(group) == 1 and names:
            lines.append(f"• {names[0]}: {head}")
        else:
            lines.append(f"• {head}:\n  {', '.join(names)}{tail}")
        if used > _BODY_BUDGET:
            rest = sum(len(g) for g in list(groups.values())[len(lines) :])
            if rest:
                lines.append(f"… and {rest} more")
            break
    return lines


def render_alert(alert: Alert, company_id: str | None, now: float) -> str:
    """The message for one audience: owners (None) see every member, a team chat its own."""
    members = alert.members_for(company_id)
    live = [m for m in members if m.active]
    resolved = alert.state is AlertState.RESOLVED
    icon = "✅" if resolved else KIND_ICON.get(alert.kind, "⚠️")
    by_target = alert.kind is AlertKind.RUNTIME_UNREACHABLE
    code = alert.cause.partition(":")[2]
    if by_target:  # the cause is the target; the codes are the members'
        code = ", ".join(dict.fromkeys(m.reason_code for m in members if m.reason_code))
    head = f"{icon} <b>#{alert.id} {esc(alert.title)}</b>"
    if code:
        head += f" · <code>{esc(code)}</code>"
    count = len(live) if not resolved else len(members)
    noun = "subject" if count == 1 else "subjects"
    if alert.kind in _AGENT_KINDS:
        noun = "agent" if count == 1 else "agents"
    elif alert.kind in (AlertKind.ISSUE_BLOCKED, AlertKind.RECOVERY_LOOP):
        noun = "issue" if count == 1 else "issues"
    lines = [head, f"{count} {noun} · since {_time(alert.created_at)}"]
    if alert.severity is Severity.CRITICAL and not resolved:
        lines[-1] += " · critical"
    if by_target:
        lines.append(
            f"<b>{'Was down' if resolved else 'Down'}:</b> {esc(alert.cause.partition(':')[2])}"
        )
    tail = []
    if alert.fixes and not resolved:
        hints = "; or ".join(FIX_HINTS[f] for f in alert.fixes)
        tail += ["", f"<b>Fix:</b> {esc(hints)}."]
    footer = _footer(alert, now)
    if footer:
        tail += ["", *footer]
    body = _members_html(members, names_after=by_target)
    while True:  # whole lines only: cutting HTML mid-tag would make Telegram refuse it
        text = "\n".join([*lines, "", *body, *tail])
        if len(text) <= MAX_TEXT or not body:
            return text
        body = [*body[:-2], "… and more"] if len(body) > 1 else []


def _footer(alert: Alert, now: float) -> list[str]:
    out = []
    if alert.state is AlertState.RESOLVED and alert.resolved_at is not None:
        out.append(f"✅ <b>Resolved</b> at {_time(alert.resolved_at)}")
    if alert.acked_by and alert.acked_at is not None:
        out.append(f"👍 Acknowledged by {esc(alert.acked_by)} at {_time(alert.acked_at)}")
    if alert.state is AlertState.MUTED and alert.muted_until is not None:
        who = alert.mutes[0] if alert.mutes else None
        by = f" by {esc(who.author)}" if who else ""
        why = f": {esc(who.reason)}" if who and who.reason else ""
        out.append(f"🔕 Muted{by} until {_time(alert.muted_until)}{why}")
    return out


def alert_keyboard(alert: Alert) -> InlineKeyboardMarkup | None:
    """Acknowledge, Mute 1h/4h/24h and the alert's fixes; none once it is resolved."""
    if alert.state is AlertState.RESOLVED:
        return None
    rows: list[list[InlineKeyboardButton]] = []
    if alert.state is AlertState.FIRING:
        rows.append(
            [InlineKeyboardButton("👍 Acknowledge", callback_data=callback(alert.id, "ack"))]
        )
    rows.append(
        [
            InlineKeyboardButton(f"🔕 {c}", callback_data=callback(alert.id, "mute", c))
            for c in MUTE_CHOICES
        ]
    )
    fixes = [fix_button(alert, f) for f in alert.fixes]
    if fixes:
        rows.append(fixes)
    return InlineKeyboardMarkup(rows)


def fix_button(alert: Alert, fix: Fix, label: str | None = None) -> InlineKeyboardButton:
    """The button for one of the alert's fixes, as the alert handlers read it."""
    return InlineKeyboardButton(
        label or FIX_LABELS[fix], callback_data=callback(alert.id, "fix", fix.value)
    )


DIGEST_ICON = "📬"
MAX_BUTTONS = 100  # Telegram's limit on an inline keyboard
_DIGEST_ROW = 3  # fix buttons per keyboard row
_SUBJECTS_SHOWN = 2  # subjects named per alert in a digest; the rest are counted


def digest_order(alerts: Sequence[Alert]) -> list[list[Alert]]:
    """The alerts by kind, the worst kind first (open critical ones, then the most open),
    open alerts before resolved ones within a kind."""
    kinds: dict[AlertKind, list[Alert]] = {}
    for a in alerts:
        kinds.setdefault(a.kind, []).append(a)

    def worst(group: list[Alert]) -> tuple[int, int, int]:
        live = [a for a in group if a.open]
        critical = any(a.severity is Severity.CRITICAL for a in live)
        return (0 if critical else 1, -len(live), min(a.id for a in group))

    groups = sorted(kinds.values(), key=worst)
    return [sorted(g, key=lambda a: (not a.open, a.id)) for g in groups]


def _digest_entry(alert: Alert, company_id: str | None) -> str:
    members = alert.members_for(company_id)
    shown = [m for m in members if m.active or not alert.open] or list(members)
    names = ", ".join(esc(m.label) for m in shown[:_SUBJECTS_SHOWN])
    more = len(shown) - _SUBJECTS_SHOWN
    entry = f"#{alert.id} {names}" + (f" +{more}" if more > 0 else "")
    if not alert.open:
        return f"<s>{entry}</s> ✓"
    if alert.state is AlertState.ACKNOWLEDGED:
        return f"{entry} 👍"
    if alert.state is AlertState.MUTED:
        return f"{entry} 🔕"
    return entry


def render_digest(alerts: Sequence[Alert], company_id: str | None, now: float) -> str:
    """One message for a backlog of alerts: counts by kind, worst first, each alert's id and
    subjects; "all resolved" once none is open."""
    total = len(alerts)
    live = sum(1 for a in alerts if a.open)
    noun = "alert" if total == 1 else "alerts"
    since = _time(min((a.created_at for a in alerts), default=now))
    if live:
        head = f"{DIGEST_ICON} <b>{total} {noun} held up since {since}</b> · {live} open"
    else:
        head = f"✅ <b>All {total} {noun} held up since {since} are resolved</b>"
    lines = [head, "Sent as one message instead of one each; /alerts lists them all."]
    budget = MAX_TEXT - 200  # room for the headline and the "and more" tail
    used = sum(len(x) for x in lines)
    for group in digest_order(alerts):
        first = group[0]
        open_n = sum(1 for a in group if a.open)
        count = f"{open_n} open" if open_n else ""
        if open_n < len(group):
            count += (", " if count else "") + f"{len(group) - open_n} resolved"
        icon = KIND_ICON.get(first.kind, "⚠️") if open_n else "✅"
        title = f"{icon} <b>{esc(first.title)}</b>: {count}"
        if any(a.open and a.severity is Severity.CRITICAL for a in group):
            title += " · critical"
        entries: list[str] = []
        for a in group:
            entry = _digest_entry(a, company_id)
            if used + len(entry) + len(title) > budget:
                break
            entries.append(entry)
            used += len(entry) + 3
        lines += ["", title]
        if entries:
            lines.append(" · ".join(entries))
        if len(entries) < len(group):
            lines.append(f"… and {len(group) - len(entries)} more (/alerts)")
        used += len(title)
    return "\n".join(lines)


def digest_keyboard(alerts: Sequence[Alert]) -> InlineKeyboardMarkup | None:
    """The open alerts' fixes, worst first: one "Rotate tokens" (a rotation fixes every
    agent), one button per alert for the others; at most Telegram's 100 buttons."""
    buttons: list[InlineKeyboardButton] = []
    rotate = False
    for group in digest_order(alerts):
        for a in group:
            if not a.open:
                continue
            for m in a.active_members:
                if m.question_id is not None:  # a question's "fix" is its card
                    ref = str(m.question_id)
                    buttons.append(
                        InlineKeyboardButton(
                            f"❓ Q{ref}", callback_data=encode(Kind.QUESTION, ref, "show")
                        )
                    )
            for f in a.fixes:
                if f is Fix.ROTATE:
                    if rotate:
                        continue
                    rotate = True
                    buttons.append(fix_button(a, f))
                else:
                    buttons.append(fix_button(a, f, f"{FIX_LABELS[f]} #{a.id}"))
    buttons = buttons[:MAX_BUTTONS]
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        [buttons[i : i + _DIGEST_ROW] for i in range(0, len(buttons), _DIGEST_ROW)]
    )


def render_summary(summary: dict[str, Any]) -> str:
    """ "Name (role) · ALI-12: text" — the summary an agent posted, for its team chat."""
    who = f"<b>{esc(summary['name'])}</b> ({esc(summary['role'])})"
    where = f" · {esc(summary['issue_id'])}" if summary.get("issue_id") else ""
    body = scrub(str(summary["body"]))  # before the cut, so no secret is cut past the mask
    room = MAX_TEXT - 200
    if len(body) > room:
        body = body[:room] + "…"
    return f"{who}{where}: {esc(body)}"
