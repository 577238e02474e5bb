"""The data behind `/status`: per company, agents by status, work, and this month's spend."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.clock import day_key, month_start
from core.models import Company
from core.store import rows
from core.store.db import Database


@dataclass(slots=True)
class CompanyBoard:
    company: Company
    agents: dict[str, int] = field(default_factory=dict)  # status -> count
    issues: dict[str, int] = field(default_factory=dict)  # status -> count
    llm_calls: int = 0  # runs started this month: each woke a model
    tokens: int = 0
    cost: float = 0.0
    saved_calls: int = 0  # heartbeats this month that found no work and woke nothing

    @property
    def open_issues(self) -> int:
        return sum(n for s, n in self.issues.items() if s not in ("done", "cancelled"))


async def fleet_board(db: Database, now: float) -> list[CompanyBoard]:
    """One pass over the store; every query is an index scan or a small group-by."""
    boards = {
        r["id"]: CompanyBoard(rows.company(r))
        for r in await db.fetchall("SELECT id, name, prefix, chat FROM companies ORDER BY id")
    }
    for r in await db.fetchall(
        "SELECT company_id, status, count(*) FROM agents WHERE deleted_at IS NULL "
        "GROUP BY company_id, status"
    ):
        boards[r[0]].agents[r[1]] = r[2]
    for r in await db.fetchall(
        "SELECT company_id, status, count(*) FROM issues GROUP BY company_id, status"
    ):
        boards[r[0]].issues[r[1]] = r[2]
    since = month_start(now)
    for r in await db.fetchall(
        # runs.company_id and company_heartbeats (schema migration 3) spare a join per row.
        "SELECT company_id, count(*), coalesce(sum(input_tokens + output_tokens), 0), "
        "coalesce(sum(cost), 0) FROM runs WHERE started_at >= ? GROUP BY company_id",
        (since,),
    ):
        b = boards[r[0]]
        b.llm_calls, b.tokens, b.cost = r[1], r[2], r[3]
    for r in await db.fetchall(
        "SELECT company_id, sum(count) FROM company_heartbeats "
        "WHERE outcome = 'no_work' AND day >= ? GROUP BY company_id",
        (day_key(since),),
    ):
        boards[r[0]].saved_calls = r[1]
    return list(boards.values())
