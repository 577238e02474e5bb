"""Routines and the backlog as the phone shows them (/routines, /backlog)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot.views.html import clip, esc
from bot.views.render import issue_line
from core import Issue, Routine


def _local(ts: float, timezone: str) -> str:
    try:
        zone = ZoneInfo(timezone)
    except (ValueError, KeyError):  # stored zones are checked when added; this is a fallback
        zone = ZoneInfo("UTC")
    return datetime.fromtimestamp(ts, UTC).astimezone(zone).strftime("%a %d %b %H:%M")


def routine_line(r: Routine, *, company: bool = False) -> str:
    """One routine in a few lines; `company` names its company (in a list of all of them)."""
    state = (
        f"⏸ paused · {esc(r.timezone)}"
        if r.paused
        else f"next {_local(r.next_at, r.timezone)} {esc(r.timezone)}"
    )
    prio = f" · {r.priority.value}" if r.priority.value != "medium" else ""
    where = f"@{esc(r.company_id)}" if company else ""
    lines = [
        f"{'⏸' if r.paused else '🔁'} <b>{esc(r.ref)}</b> {esc(r.name)} · "
        f"<code>{esc(r.schedule)}</code> → {esc(r.assignee)}{where}{prio}",
        f"    {state}" + (f" · last {esc(r.last_issue)}" if r.last_issue else ""),
    ]
    counts = []
    if r.skipped:
        counts.append(f"skipped {r.skipped} (in a row {r.streak})")
    if r.missed:
        counts.append(f"missed {r.missed} while down")
    if r.source == "config":
        counts.append("from config")
    if counts:
        lines.append("    " + " · ".join(counts))
    if r.late and not r.paused:
        lines.append(f"    ⚠️ {esc(clip(r.late, 160))}")
    return "\n".join(lines)


def routine_list(routines: Sequence[Routine], scope: str | None, more: int = 0) -> str:
    """The /routines list; `more` routines were left off (the list names how to narrow it)."""
    where = f" in {esc(scope)}" if scope else ""
    lines = [f"<b>Routines</b>{where}"]
    if not routines:
        lines.append(
            "None yet. Add one: <code>/routines add standup ceo weekdays 09:00 | "
            "Standup {date}</code>, or under companies[].routines in the config."
        )
    lines.extend(routine_line(r, company=scope is None) for r in routines)
    if more:
        lines.append(f"… and {more} more: /routines COMPANY shows one company's.")
    return "\n".join(lines)


def backlog_list(issues: Sequence[Issue], scope: str | None, more: bool) -> str:
    where = f" of {esc(scope)}" if scope else ""
    lines = [f"<b>Backlog</b>{where} · in the order it is promoted"]
    if not issues:
        lines.append(
            "Empty. File to it with <code>/issue ASSIGNEE !backlog TITLE</code>, or park an "
            "issue with /backlog ISSUE."
        )
    lines.extend(issue_line(i) for i in issues)
    if more:
        lines.append(f"… the first {len(issues)} shown.")
    elif issues:
        lines.append("\nAn agent whose inbox runs empty gets the top of its backlog by itself.")
    return "\n".join(lines)
