"""What happened in a window of time, per company: the data behind the daily digest.

Like core.reports.board, one pass of small group-by queries over the store; the bot only renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.clock import day_key
from core.models import Agent, AgentStatus, Company, Issue
from core.store import rows
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
    saved_calls: int = 0  # empty heartbeats since the window's first day
    attention: list[Agent] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)  # newest first


async def fleet_activity(
    db: Database, since: float, *, summaries: int = 0
) -> list[CompanyActivity]:
    """Per company: work filed, finished and blocked, runs and spend since `since`, agents that
    need a human, and (if `summaries` > 0) that many newest agent summaries."""
    out = {
        r["id"]: CompanyActivity(rows.company(r))
        for r in await db.fetchall("SELECT id, name, prefix, chat FROM companies ORDER BY id")
    }
    for r in await db.fetchall(
        "SELECT company_id, count(*) FROM issues WHERE created_at >= ? GROUP BY company_id",
        (since,),
    ):
        out[r[0]].filed = r[1]
    for r in await db.fetchall(
        "SELECT company_id, count(*) FROM issues WHERE status = 'done' AND updated_at >= ? "
        "GROUP BY company_id",
        (since,),
    ):
        out[r[0]].done = r[1]
    for r in await db.fetchall(
        f"SELECT {rows.ISSUE_COLUMNS} FROM issues WHERE status = 'blocked' "
        "ORDER BY updated_at DESC LIMIT 200"
    ):
        issue = rows.issue(r)
        out[issue.company_id].blocked.append(issue)
    for r in await db.fetchall(
        "SELECT a.company_id, r.status, count(*), coalesce(sum(r.cost), 0) FROM runs r "
        "JOIN agents a ON a.id = r.agent_id WHERE r.started_at >= ? GROUP BY 1, 2",
        (since,),
    ):
        act = out[r[0]]
        act.runs[r[1]] = r[2]
        act.cost += r[3]
    for r in await db.fetchall(
        "SELECT a.company_id, sum(h.count) FROM heartbeats h JOIN agents a ON a.id = h.agent_id "
        "WHERE h.day >= ? AND h.outcome = 'no_work' GROUP BY a.company_id",
        (day_key(since),),
    ):
        out[r[0]].saved_calls = r[1]
    marks = ",".join("?" for _ in ATTENTION)
    for r in await db.fetchall(
        f"SELECT {rows.AGENT_COLUMNS} FROM agents WHERE deleted_at IS NULL "
        f"AND status IN ({marks}) ORDER BY company_id, id",
        tuple(s.value for s in ATTENTION),
    ):
        agent = rows.agent(r)
        out[agent.company_id].attention.append(agent)
    if summaries > 0:
        for r in await db.fetchall(
            "SELECT s.agent_id, a.company_id, s.issue_id, s.body, s.created_at FROM summaries s "
            "JOIN agents a ON a.id = s.agent_id WHERE s.created_at >= ? "
            "ORDER BY s.id DESC LIMIT ?",
            (since, summaries),
        ):
            out[r[1]].summaries.append(Summary(r[0], r[2], r[3], r[4]))
    return list(out.values())
