"""What the fleet cost this month: run usage rolled up per agent and per company.

Tokens are counted on their own, so a model billed at 0 still shows what it used. Every
heartbeat that did not wake a model (no work, paused, error, unauthenticated, busy) is an LLM
call saved: a naive orchestrator would have woken the model for each of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from core.clock import Clock, month_start, utc
from core.models import PLANNER
from core.store import reports as totals
from core.store.db import Database


@dataclass(frozen=True, slots=True)
class Usage:
    runs: int = 0  # each run woke a model once: one LLM call
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    saved_calls: int = 0  # heartbeats that woke no model
    saved_by: Mapping[str, int] = field(default_factory=dict)  # per heartbeat outcome
    # Of the runs, those on planning issues (core.queues.planner): LLM calls fleetbot chose
    # to make when the queue ran empty, shown apart so the owner sees what feeding it costs.
    planning_runs: int = 0
    planning_cost: float = 0.0
    failed_runs: int = 0  # failed or timed out

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
            self.planning_runs + other.planning_runs,
            self.planning_cost + other.planning_cost,
            self.failed_runs + other.failed_runs,
        )


@dataclass(frozen=True, slots=True)
class MonthCosts:
    month: str  # "2026-01"
    agents: Mapping[str, Usage]  # agent id -> usage
    companies: Mapping[str, Usage]  # company id -> usage
    total: Usage
    closed: Mapping[str, int] = field(default_factory=dict)  # agent id -> issues done
    start: float = 0.0
    end: float = 0.0

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

    async def month(
        self, company_id: str | None = None, at: float | None = None, *, closed: bool = False
    ) -> MonthCosts:
        """The calendar month (UTC) around `at` (default now), optionally one company's;
        with `closed`, the issues each agent closed too (the ROI's; the monitors, which read
        the month every pass, do without)."""
        start = month_start(self.clock.now() if at is None else at)
        end = _next_month(start)
        agents: dict[str, Usage] = {}
        company_of: dict[str, str] = {}
        reader = self.db.reader
        for row in await totals.agent_usage(reader, start, end, company_id, PLANNER):
            agent_id, cid, runs, tokens_in, tokens_out, cost, plans, plan_cost, failed = row
            company_of[agent_id] = cid
            agents[agent_id] = Usage(
                runs,
                tokens_in,
                tokens_out,
                cost,
                planning_runs=plans,
                planning_cost=plan_cost,
                failed_runs=failed,
            )
        saved: dict[str, dict[str, int]] = {}
        for agent_id, cid, outcome, beats in await totals.agent_skipped_beats(
            reader, start, end, company_id
        ):
            company_of[agent_id] = cid
            saved.setdefault(agent_id, {})[outcome] = beats
        for agent_id, by in saved.items():
            base = agents.get(agent_id, Usage())
            agents[agent_id] = replace(base, saved_calls=sum(by.values()), saved_by=by)
        companies: dict[str, Usage] = {}
        total = Usage()
        for agent_id, usage in agents.items():
            cid = company_of[agent_id]
            companies[cid] = companies.get(cid, Usage()) + usage
            total = total + usage
        done = await totals.closed_by_agent(reader, start, end, company_id) if closed else {}
        return MonthCosts(utc(start).strftime("%Y-%m"), agents, companies, total, done, start, end)
