"""Heartbeat ROI as the phone shows it: one agent's month in /costs AGENT (core.reports.roi
decides the flags; this only words them; the digest's lines are bot.views.render's)."""

from __future__ import annotations

from bot.views.html import esc
from bot.views.render import count, money, tokens
from core import Roi


def agent_roi(r: Roi) -> str:
    """/costs AGENT: what the agent's calls bought this month, and what to change."""
    u = r.usage
    calls = count(r.work_calls, "LLM call") + " on work"
    if u.planning_runs:
        calls += f" + {u.planning_runs} planning ({money(u.planning_cost)})"
    lines = [
        f"<b>{esc(r.agent.name)}</b> <code>{esc(r.agent.id)}</code> · heartbeat ROI · "
        f"{esc(r.month)}",
        calls,
        f"{count(u.saved_calls, 'heartbeat')} skipped without waking a model",
        f"{tokens(u.tokens)} tokens · {money(u.cost)}"
        + (f" · {count(u.failed_runs, 'failed run')}" if u.failed_runs else ""),
    ]
    per = r.cost_per_closed
    if per is None:
        lines.append("No issue closed this month")
    else:
        lines.append(f"{count(r.closed, 'issue')} closed · {money(per)} per issue closed")
    lines.append("")
    lines.extend(flag_lines(r) or ["✅ Nothing to change: its calls close issues."])
    return "\n".join(lines)


def flag_lines(r: Roi) -> list[str]:
    return [f"⚠️ {esc(f.problem)}\n    → {esc(f.suggestion)}" for f in r.flags]
