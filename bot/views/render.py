"""HTML for every answer the bot gives: the board, agents, issues, tokens, runtimes, costs,
the digest, the /alerts list.

An idle agent whose runtime failed its last self-test is shown as "unreachable" (📡, with the
target and the reason) rather than idle: a display state the handlers look up on the fleet's
RuntimeWatch and pass in, not an agent status.

Pure functions of core records and a `now`. Everything that came from outside (names, titles,
reasons, summaries) goes through `esc`; what agents and runtimes wrote (titles, bodies,
comments, reasons, summaries) first through `scrub` (bot.redaction), which masks secrets as the
logs do. Escaping, clipping and splitting are bot.views.html's; they are re-exported here, so a
handler builds its answer with `render` alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from bot.redaction import scrub
from bot.views.html import (
    clip as clip,
    clip_block as clip_block,
    esc as esc,
    split_html as split_html,
)
from bot.views.replicas import replicas_line
from core import (
    Agent,
    AgentCheck,
    AgentStatus,
    Alert,
    AuthReport,
    Comment,
    Company,
    CompanyActivity,
    CompanyBoard,
    Issue,
    IssueStatus,
    MonthCosts,
    Mute,
    Replica,
    Run,
    RunStatus,
    RuntimeCheck,
    RuntimeReport,
    TargetFailure,
    Usage,
    format_duration,
    utc,
)

MAX_LISTED = 300  # list lines per answer before the rest is only counted

AGENT_ICON = {
    AgentStatus.IDLE: "🟢",
    AgentStatus.RUNNING: "🔵",
    AgentStatus.PAUSED: "⏸",
    AgentStatus.ERROR: "🔴",
    AgentStatus.UNAUTHENTICATED: "🔑",
}
UNREACHABLE = "unreachable"  # the display state of an idle agent whose runtime is down
UNREACHABLE_ICON = "📡"
RUN_ICON = {
    RunStatus.RUNNING: "▶️",
    RunStatus.SUCCEEDED: "✅",
    RunStatus.FAILED: "❌",
    RunStatus.TIMED_OUT: "⌛",
    RunStatus.CANCELLED: "✖️",
    RunStatus.INTERRUPTED: "⚡",
}
ISSUE_ICON = {
    IssueStatus.BACKLOG: "🗂",
    IssueStatus.TODO: "📝",
    IssueStatus.IN_PROGRESS: "🔧",
    IssueStatus.IN_REVIEW: "👀",
    IssueStatus.DONE: "✅",
    IssueStatus.BLOCKED: "⛔",
    IssueStatus.CANCELLED: "✖️",
}
# Order of agent statuses on the board: what needs a human first.
_STATUS_ORDER = (
    AgentStatus.UNAUTHENTICATED,
    AgentStatus.ERROR,
    AgentStatus.PAUSED,
    AgentStatus.RUNNING,
    AgentStatus.IDLE,
)


def ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    delta = now - ts
    if delta < 1:
        return "just now"
    return f"{format_duration(delta)} ago"


def until(ts: float, now: float) -> str:
    delta = ts - now
    return "now" if delta < 1 else f"in {format_duration(delta)}"


def money(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 0.1 or amount == 0 else f"${amount:.4f}"


def count(n: int, noun: str) -> str:
    """`1 agent`, `2 agents`, `2 companies`."""
    if n == 1:
        return f"{n} {noun}"
    plural = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"
    return f"{n} {plural}"


def stamp(now: float) -> str:
    return utc(now).strftime("%Y-%m-%d %H:%M UTC")


def status_board(
    boards: Sequence[CompanyBoard],
    firing: dict[str, int],
    now: float,
    unreachable: Mapping[str, Mapping[str, int]] | None = None,
    replicas: Sequence[Replica] = (),
) -> str:
    """/status: one short block per company, sized for one phone screen. `unreachable`
    counts, per company and status, the agents to show as unreachable instead. `replicas`:
    the replicas of `fleetbot run` alive on a shared store (shown when there is more than one,
    or none leads)."""
    lines = [f"<b>Fleet status</b> · {stamp(now)}", *replicas_line(replicas)]
    if not boards:
        lines.append("No companies configured yet: add them under companies: in config.yaml.")
    for b in boards:
        lines.append("")
        lines.append(f"<b>{esc(b.company.name)}</b> · {esc(b.company.prefix)}")
        down = (unreachable or {}).get(b.company.id, {})
        shown = [
            (AGENT_ICON[st], b.agents.get(st.value, 0) - down.get(st.value, 0), st.value)
            for st in _STATUS_ORDER
        ]
        # Taken out of their status's count, shown just before the idle ones.
        shown.insert(-1, (UNREACHABLE_ICON, sum(down.values()), UNREACHABLE))
        agents = [f"{icon} {n} {label}" for icon, n, label in shown if n > 0]
        lines.append(" · ".join(agents) if agents else "no agents")
        blocked = b.issues.get(IssueStatus.BLOCKED.value, 0)
        work = f"Issues: {b.open_issues} open"
        lines.append(work + (f" · ⛔ {blocked} blocked" if blocked else ""))
        alerts = firing.get(b.company.id, 0)
        lines.append(f"🚨 {count(alerts, 'alert')} firing" if alerts else "No alerts firing")
        lines.append(
            f"LLM this month: {count(b.llm_calls, 'call')} · {money(b.cost)} · "
            f"{b.saved_calls} saved by skipped heartbeats"
        )
    return "\n".join(lines)


def agent_line(a: Agent, unreachable: RuntimeCheck | None = None) -> str:
    """One agent: icon, id, name, role, and what is wrong if anything is."""
    icon = UNREACHABLE_ICON if unreachable is not None else AGENT_ICON[a.status]
    line = f"{icon} <code>{esc(a.id)}</code> {esc(a.name)} · {esc(a.role)}"
    if unreachable is not None:
        line += f" — {UNREACHABLE}: <i>{esc(clip(scrub(unreachable.reason), 120))}</i>"
    elif a.status is not AgentStatus.IDLE:
        line += f" — {a.status.value}"
        if a.reason:
            line += f": <i>{esc(clip(scrub(a.reason), 80))}</i>"
    return line


def agent_list(
    agents: Sequence[Agent],
    companies: Sequence[Company],
    limit: int = MAX_LISTED,
    unreachable: Mapping[str, RuntimeCheck] | None = None,
) -> str:
    """Agents grouped by company; past `limit` the rest is counted, not listed (a fleet of
    thousands would otherwise arrive as a hundred messages)."""
    names = {c.id: c for c in companies}
    down = unreachable or {}
    if not agents:
        return "No agents here. Agents are listed under companies: in config.yaml."
    lines: list[str] = []
    current = None
    for a in agents[:limit]:
        if a.company_id != current:
            current = a.company_id
            company = names.get(a.company_id)
            title = company.name if company else a.company_id
            lines.append(("\n" if lines else "") + f"<b>{esc(title)}</b> ({esc(a.company_id)})")
        lines.append(agent_line(a, down.get(a.id)))
    if len(agents) > limit:
        lines.append(f"… and {len(agents) - limit} more: /agents COMPANY narrows the list.")
    lines.append("\nOpen one with /agent ID.")
    return "\n".join(lines)


def agent_card(
    agent: Agent,
    company: Company | None,
    inbox: int,
    last_run: Run | None,
    now: float,
    unreachable: RuntimeCheck | None = None,
) -> str:
    where = company.name if company else agent.company_id
    icon = UNREACHABLE_ICON if unreachable is not None else AGENT_ICON[agent.status]
    since = format_duration(max(0.0, now - agent.status_changed_at))
    lines = [
        f"{icon} <b>{esc(agent.name)}</b> <code>{esc(agent.id)}</code>",
        f"{esc(agent.role)} at {esc(where)}"
        + (f" · reports to {esc(agent.reports_to)}" if agent.reports_to else ""),
    ]
    if unreachable is not None:
        lines.append(
            f"Status: <b>{UNREACHABLE}</b> ({agent.status.value} for {since}, its runtime is down)"
        )
        lines.append(
            f"Runtime: {esc(unreachable.target)} — "
            f"<i>{esc(clip(scrub(unreachable.explained), 300))}</i> "
            f"(<code>{esc(unreachable.code)}</code>, checked {ago(unreachable.at, now)})"
        )
    else:
        lines.append(f"Status: <b>{agent.status.value}</b> for {since}")
    if agent.reason or agent.reason_code:
        code = f" (<code>{esc(agent.reason_code)}</code>)" if agent.reason_code else ""
        lines.append(f"Why: <i>{esc(clip(scrub(agent.reason), 300))}</i>{code}")
    lines.append(f"Inbox: {count(inbox, 'open issue')}")
    if last_run is None:
        lines.append("Last run: none yet")
    else:
        lines.append(f"Last run: {run_line(last_run, now)}")
    beat = f"every {format_duration(agent.heartbeat_seconds)}"
    if agent.status in (AgentStatus.IDLE, AgentStatus.UNAUTHENTICATED):
        beat += f", next {until(agent.next_heartbeat_at, now)}"
    lines.append(f"Model: {esc(agent.model)} · heartbeat {beat}")
    lines.append(f"Token version {agent.token_version} · last seen {ago(agent.last_seen_at, now)}")
    return "\n".join(lines)


def run_line(run: Run, now: float) -> str:
    parts = [f"{RUN_ICON[run.status]} {run.status.value}"]
    if run.issue_id:
        parts.append(f"<code>{esc(run.issue_id)}</code>")
    parts.append(f"{run.turns} turns · {money(run.cost)}")
    parts.append(ago(run.started_at, now))
    if run.external_id:
        # The runtime's own id (OpenClaw's runId), to find the turn in the gateway's logs.
        parts.append(f"turn <code>{esc(clip(run.external_id, 40))}</code>")
    line = " · ".join(parts)
    if run.status is not RunStatus.SUCCEEDED and run.reason:
        line += f" — <i>{esc(clip(scrub(run.reason), 100))}</i>"
    return line


def runs_list(agent: Agent, runs: Sequence[Run], now: float) -> str:
    lines = [f"<b>Recent runs of {esc(agent.name)}</b> <code>{esc(agent.id)}</code>"]
    if not runs:
        lines.append("No runs yet: its heartbeats have found no work.")
    lines.extend(run_line(r, now) for r in runs)
    return "\n".join(lines)


PRIORITY_ICON = {"critical": "🔴", "high": "🟠", "medium": "", "low": "⚪"}


def priority_tag(issue: Issue) -> str:
    """` 🟠high`, or nothing for medium, the default: naming it on every line would only hide
    the issues whose priority differs."""
    p = issue.priority.value
    return f" {PRIORITY_ICON[p]}{p}" if PRIORITY_ICON[p] else ""


def issue_line(issue: Issue) -> str:
    who = f" → {esc(issue.assignee_id)}" if issue.assignee_id else ""
    return (
        f"{ISSUE_ICON[issue.status]} <code>{esc(issue.id)}</code> {issue.status.value}"
        f"{priority_tag(issue)}{who} · {esc(clip(scrub(issue.title), 80))}"
    )


def issue_list(issues: Sequence[Issue], heading: str, more: bool) -> str:
    lines = [f"<b>{esc(heading)}</b>"]
    if not issues:
        lines.append("None. File one with /issue.")
    lines.extend(issue_line(i) for i in issues)
    if more:
        lines.append(f"… showing the newest {len(issues)}; narrow it with a filter.")
    elif issues:
        lines.append("\nOpen one with /issues ID.")
    return "\n".join(lines)


def issue_card(issue: Issue, comments: Sequence[Comment], now: float) -> str:
    lines = [
        f"{ISSUE_ICON[issue.status]} <b>{esc(issue.id)}</b> · {esc(scrub(issue.title))}",
        f"Status: <b>{issue.status.value}</b>"
        + (f" — <i>{esc(clip(scrub(issue.reason), 200))}</i>" if issue.reason else ""),
        f"Assignee: {esc(issue.assignee_id or 'nobody')} · attempts "
        f"{issue.attempts}/{issue.max_attempts}"
        + (f" · priority <b>{issue.priority.value}</b>" if priority_tag(issue) else ""),
        f"Filed by {esc(issue.created_by)} {ago(issue.created_at, now)} · updated "
        f"{ago(issue.updated_at, now)}",
    ]
    if issue.model:
        lines.append(f"Model: {esc(issue.model)}")
    if issue.body:
        lines.append(f"<blockquote>{esc(clip_block(scrub(issue.body), 1500))}</blockquote>")
    if comments:
        lines.append(f"<b>Comments</b> ({len(comments)})")
        for c in comments[-3:]:
            lines.append(
                f"{esc(c.author)}, {ago(c.created_at, now)}: {esc(clip(scrub(c.body), 300))}"
            )
    return "\n".join(lines)


def auth_report(report: AuthReport, title: str = "Token check") -> str:
    icon = "✅" if report.ok else "🔑"
    lines = [
        f"{icon} <b>{esc(title)}</b>: {esc(report.summary())} · key <code>{esc(report.kid)}</code>"
    ]
    for c in report.failing[:30]:
        lines.append(check_line(c))
    if len(report.failing) > 30:
        lines.append(f"… and {len(report.failing) - 30} more")
    return "\n".join(lines)


def check_line(c: AgentCheck) -> str:
    if c.ok:
        return f"✅ <code>{esc(c.agent_id)}</code> authenticates"
    return (
        f"🔑 <code>{esc(c.agent_id)}</code>: <code>{esc(c.code)}</code> — "
        f"{esc(clip(scrub(c.message), 160))}. Fix: {esc(c.fix)}"
    )


def runtime_report(report: RuntimeReport, title: str = "Runtime check") -> str:
    """The runtime self-test: the summary, then one line per failing target with its agents."""
    icon = "✅" if report.ok else UNREACHABLE_ICON
    lines = [f"{icon} <b>{esc(title)}</b>: {esc(report.summary())}"]
    groups = report.by_target()
    lines.extend(target_line(g) for g in groups[:30])
    if len(groups) > 30:
        lines.append(f"… and {len(groups) - 30} more; `fleetbot check` lists them all")
    return "\n".join(lines)


def target_line(g: TargetFailure) -> str:
    names = ", ".join(f"<code>{esc(a)}</code>" for a in g.agents[:20])
    if len(g.agents) > 20:
        names += f" +{len(g.agents) - 20}"
    head = f"{UNREACHABLE_ICON} {esc(g.target)} — <code>{esc(g.code)}</code> · {names}"
    said = g.explained
    if len(said) == 1:
        return f"{head}\n    {esc(clip(scrub(said[0]), 300))}"
    return "\n".join(
        [head]
        + [
            f"    <code>{esc(c.agent_id)}</code>: {esc(clip(scrub(c.explained), 200))}"
            for c in g.checks[:10]
        ]
    )


def costs(
    month: MonthCosts,
    companies: Sequence[Company],
    agents: Sequence[Agent],
    budgets: dict[str, float | None],
) -> str:
    """/costs: per company, LLM calls, tokens and spend this month, the budget used, the
    biggest spenders, and the calls saved by heartbeats that woke no model."""
    lines = [f"<b>LLM spend</b> · {esc(month.month)}"]
    for company in companies:
        usage = month.companies.get(company.id, Usage())
        lines.append("")
        lines.append(f"<b>{esc(company.name)}</b>: {money(usage.cost)}")
        planning = (
            f" (of them {usage.planning_runs} planning, {money(usage.planning_cost)})"
            if usage.planning_runs
            else ""
        )
        lines.append(
            f"{count(usage.llm_calls, 'LLM call')}{planning} · {tokens(usage.tokens)} tokens · "
            f"{usage.saved_calls} calls saved by skipped heartbeats"
        )
        budget = budgets.get(company.id)
        if budget:
            lines.append(f"Budget {money(budget)}: {usage.cost / budget * 100:.0f}% used")
        spenders = [
            (a.id, month.agents[a.id])
            for a in agents
            if a.company_id == company.id and a.id in month.agents and month.agents[a.id].runs
        ]
        for agent_id, u in sorted(spenders, key=lambda x: (-x[1].cost, x[0]))[:5]:
            lines.append(f"  <code>{esc(agent_id)}</code> {money(u.cost)} · {count(u.runs, 'run')}")
    if not companies:
        lines.append("No companies configured.")
    else:
        lines.append("\nOne agent's calls against the issues it closed: /costs AGENT")
    return "\n".join(lines)


def tokens(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    return str(n)


def digest(activity: Iterable[CompanyActivity], since: float, now: float) -> str:
    hours = round((now - since) / 3600)
    lines = [f"<b>Daily digest</b> · the last {hours} hours, to {stamp(now)}"]
    for act in activity:
        lines.append("")
        lines.extend(company_digest(act, now))
    return "\n".join(lines)


def company_digest(act: CompanyActivity, now: float) -> list[str]:
    runs = sum(act.runs.values())
    ok = act.runs.get(RunStatus.SUCCEEDED.value, 0)
    failed = runs - ok - act.runs.get(RunStatus.RUNNING.value, 0)
    lines = [
        f"<b>{esc(act.company.name)}</b>",
        f"Issues: {act.filed} filed · {act.done} done · {len(act.blocked)} blocked",
        f"Runs: {runs} ({ok} ok, {failed} failed) · {money(act.cost)} · "
        f"{act.saved_calls} calls saved",
    ]
    for issue in act.blocked[:5]:
        lines.append(f"⛔ {issue_line(issue)[2:]}")
    if len(act.blocked) > 5:
        lines.append(f"… and {len(act.blocked) - 5} more blocked")
    for a in act.attention[:8]:
        lines.append(agent_line(a))
    if act.promoted:
        shown = ", ".join(f"<code>{esc(i)}</code>" for i in act.promoted[:10])
        more = f" +{len(act.promoted) - 10}" if len(act.promoted) > 10 else ""
        lines.append(f"⬆️ Promoted from the backlog: {shown}{more}")
    if not runs and not act.filed:
        lines.append("💤 Empty queue: nobody filed work. Feed the team with /issue.")
    for r in act.flagged[:3]:
        lines.append(
            f"💸 <code>{esc(r.agent.id)}</code> {esc(r.flags[0].problem)}\n"
            f"    → {esc(r.flags[0].suggestion)}"
        )
    if len(act.flagged) > 3:
        lines.append(f"… and {len(act.flagged) - 3} more agents flagged: /costs AGENT for each")
    for s in act.summaries[:5]:
        ref = f" <code>{esc(s.issue_id)}</code>" if s.issue_id else ""
        lines.append(f"📝 {esc(s.agent_id)}{ref}: {esc(clip(scrub(s.body), 200))}")
    return lines


MAX_ALERTS = 30
ALERT_ICON = {"firing": "🚨", "acknowledged": "👍", "muted": "🔕", "resolved": "✅"}


def alert_line(alert: Alert, now: float) -> str:
    live = alert.active_members
    names = ", ".join(m.label for m in live[:6]) + (f" +{len(live) - 6}" if len(live) > 6 else "")
    line = (
        f"{ALERT_ICON.get(alert.state.value, '•')} <b>#{alert.id}</b> {esc(alert.title)} · "
        f"{alert.state.value} for {format_duration(max(0.0, now - alert.created_at))}"
    )
    if names:
        line += f"\n    {esc(names)}"
    if alert.acked_by:
        line += f"\n    acknowledged by {esc(alert.acked_by)}"
    if alert.muted_until:
        line += f"\n    muted until {stamp(alert.muted_until)}"
    return line


def alert_list(alerts: Sequence[Alert], mutes: Sequence[Mute], now: float) -> str:
    lines = [f"<b>Alerts</b>: {count(len(alerts), 'open alert')}"]
    if not alerts:
        lines.append("✅ Nothing is firing.")
    lines.extend(alert_line(a, now) for a in alerts[:MAX_ALERTS])
    if len(alerts) > MAX_ALERTS:
        lines.append(f"… and {len(alerts) - MAX_ALERTS} more")
    if mutes:
        lines.append("\n<b>Mutes</b>")
        for m in mutes:
            why = f" — {esc(clip(m.reason, 80))}" if m.reason else ""
            lines.append(
                f"🔕 <code>m{m.id}</code> {esc(m.target)} until {stamp(m.until)} by "
                f"{esc(m.author)}{why}"
            )
    if alerts or mutes:
        lines.append("\n/mute TARGET 4h · /unmute ID")
    return "\n".join(lines)
