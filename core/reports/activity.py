"""What happened in a window of time, per company: the data behind the daily digest.

Like core.reports.board, one pass of small group-by queries over the store; the bot only renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.models import Agent, AgentStatus, Company, Issue
from core.queues.backlog import ACTION as PROMOTED
from core.reports.roi import Roi
from core.store import agents as agent_store, companies, reports as totals
from core.store.db import Database

# Agent statuses the digest calls out: someone should look at these.
ATTENTION = (AgentStatus.ERROR, AgentStatus.UNAUTHENTICATED, AgentStatus.PAUSED)


@dataclass(frozen=True, slots=True)
class Summary:
    agent_id: str
    issue_id: str | None
    body: str
    created_at: float


@dataclass(slots=True)
class CompanyActivity:
    company: Company
    filed: int = 0  # issues filed in the window
    done: int = 0  # issues that reached done in the window
    blocked: list[Issue] = field(default_factory=list)  # blocked now
    runs: dict[str, int] = field(default_factory=dict)  # run status -> runs started in window
    cost: float = 0.0
    saved_calls: int = 0  # heartbeats that woke no model, since the window's first day
    attention: list[Agent] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)  # newest first
    # Backlog items promoted to todo in the window (core.queues.backlog), newest first.
    promoted: list[str] = field(default_factory=list)
    # Agents the heartbeat ROI flags this month so far (core.reports.roi), worst first.
    flagged: list[Roi] = field(default_factory=list)


async def fleet_activity(
    db: Database, since: float, *, summaries: int = 0
) -> list[CompanyActivity]:
    """Per company: work filed, finished and blocked, runs and spend since `since`, agents that
    need a human, and (if `summaries` > 0) that many newest agent summaries."""
    reader = db.reader
    out = {c.id: CompanyActivity(c) for c in await companies.every(reader)}
    for company_id, n in (await totals.filed_since(reader, since)).items():
        out[company_id].filed = n
    for company_id, n in (await totals.done_since(reader, since)).items():
        out[company_id].done = n
    for issue in await totals.newest_blocked(reader):
        out[issue.company_id].blocked.append(issue)
    for company_id, status, n, cost in await totals.runs_by_status(reader, since):
        act = out[company_id]
        act.runs[status] = n
        act.cost += cost
    for company_id, n in (await totals.saved_calls_by_agent_company(reader, since)).items():
        out[company_id].saved_calls = n
    for agent in await agent_store.in_status(reader, ATTENTION):
        out[agent.company_id].attention.append(agent)
    for company, promoted in await totals.audited_issues_since(reader, PROMOTED, since):
        out[company].promoted.append(promoted)
    if summaries > 0:
        for agent_id, company_id, issue_id, body, at in await totals.summaries_since(
            reader, since, summaries
        ):
            out[company_id].summaries.append(Summary(agent_id, issue_id, body, at))
    return list(out.values())
