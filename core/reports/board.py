"""The data behind `/status`: per company, agents by status, work, and this month's spend."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.clock import month_start
from core.models import Company
from core.store import companies, reports as totals
from core.store.db import Database


@dataclass(slots=True)
class CompanyBoard:
    company: Company
    agents: dict[str, int] = field(default_factory=dict)  # status -> count
    issues: dict[str, int] = field(default_factory=dict)  # status -> count
    llm_calls: int = 0  # runs started this month: each woke a model
    tokens: int = 0
    cost: float = 0.0
    saved_calls: int = 0  # LLM calls saved this month: heartbeats that woke no model

    @property
    def open_issues(self) -> int:
        return sum(n for s, n in self.issues.items() if s not in ("done", "cancelled"))


async def fleet_board(db: Database, now: float) -> list[CompanyBoard]:
    """One pass over the store; every query is an index scan or a small group-by."""
    reader = db.reader
    boards = {c.id: CompanyBoard(c) for c in await companies.every(reader)}
    for company_id, status, n in await totals.agents_by_status(reader):
        boards[company_id].agents[status] = n
    for company_id, status, n in await totals.issues_by_status(reader):
        boards[company_id].issues[status] = n
    since = month_start(now)
    for company_id, runs, tokens, cost in await totals.company_runs(reader, since):
        b = boards[company_id]
        b.llm_calls, b.tokens, b.cost = runs, tokens, cost
    for company_id, saved in (await totals.company_saved_calls(reader, since)).items():
        boards[company_id].saved_calls = saved
    return list(boards.values())
