"""What the fleet cost this month: run usage rolled up per agent and per company.

Tokens are counted on their own, so a model billed at 0 still shows what it used. Every
heartbeat that did not wake a model (no work, paused, error, unauthenticated, busy) is an LLM
call saved: a naive orchestrator would have woken the model for each of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from core.clock import Clock, day_key, month_start, utc
from core.models import HeartbeatOutcome
from core.store.db import Database


@dataclass(frozen=True, slots=True)
class Usage:
    runs: int = 0  # each run woke a model once: one LLM call
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    saved_calls: int = 0  # heartbeats that woke no model
    saved_by: Mapping[str, int] = field(default_factory=dict)  # per heartbeat outcome

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def llm_calls(self) -> int:
        return self.runs

    def __add__(self, other: Usage) -> Usage:
        saved = dict(self.saved_by)
        for k, v in other.saved_by.items():
            saved[k] = saved.get(k, 0) + v
        return Usage(
            self.runs + other.runs,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost + other.cost,
            self.saved_calls + other.saved_calls,
            saved,
        )


@dataclass(frozen=True, slots=True)
class MonthCosts:
    month: str  # "2026-01"
    agents: Mapping[str, Usage]  # agent id -> usage
    companies: Mapping[str, Usage]  # company id -> usage
    total: Usage

    def spend(self) -> dict[str, float]:
        """Cost per subject, as the budget monitor reads it: "agent:ID" and "company:ID"."""
        out = {f"agent:{a}": u.cost for a, u in self.agents.items()}
        out.update({f"company:{c}": u.cost for c, u in self.companies.items()})
        return out


def _next_month(start: float) -> float:
    d = utc(start)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


class CostBook:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def month(self, company_id: str | None = None, at: float | None = None) -> MonthCosts:
        """The calendar month (UTC) around `at` (default now), optionally one company's."""
        start = month_start(self.clock.now() if at is None else at)
        end = _next_month(start)
        where, args = "", tuple[str, ...]()
        if company_id is not None:
            where, args = " AND a.company_id = ?", (company_id,)
        agents: dict[str, Usage] = {}
        company_of: dict[str, str] = {}
        for r in await self.db.fetchall(
            "SELECT r.agent_id, a.company_id, count(*), sum(r.input_tokens), "
            "sum(r.output_tokens), sum(r.cost) FROM runs r JOIN agents a ON a.id = r.agent_id "
            f"WHERE r.started_at >= ? AND r.started_at < ?{where} GROUP BY r.agent_id",
            (start, end, *args),
        ):
            company_of[r[0]] = r[1]
            agents[r[0]] = Usage(r[2], r[3] or 0, r[4] or 0, float(r[5] or 0.0))
        saved: dict[str, dict[str, int]] = {}
        for r in await self.db.fetchall(
            "SELECT h.agent_id, a.company_id, h.outcome, sum(h.count) FROM heartbeats h "
            "JOIN agents a ON a.id = h.agent_id WHERE h.day >= ? AND h.day < ? AND h.outcome != ?"
            f"{where} GROUP BY h.agent_id, h.outcome",
            (day_key(start), day_key(end), HeartbeatOutcome.DISPATCHED.value, *args),
        ):
            company_of[r[0]] = r[1]
            saved.setdefault(r[0], {})[r[2]] = int(r[3])
        for agent_id, by in saved.items():
            base = agents.get(agent_id, Usage())
            agents[agent_id] = replace(base, saved_calls=sum(by.values()), saved_by=by)
        companies: dict[str, Usage] = {}
        total = Usage()
        for agent_id, usage in agents.items():
            cid = company_of[agent_id]
            companies[cid] = companies.get(cid, Usage()) + usage
            total = total + usage
        return MonthCosts(utc(start).strftime("%Y-%m"), agents, companies, total)
