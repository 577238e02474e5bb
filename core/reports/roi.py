"""Heartbeat ROI: per agent, what this month's LLM calls bought, and what to change when the
answer is "little".

Read from the month's costs (core.reports.costs): LLM calls (runs), of them planning calls,
heartbeats that woke no model, tokens, cost, issues closed, cost per issue closed. An agent is
flagged only on evidence, each flag with one concrete change:

- it spent without closing anything (at least MIN_CALLS calls): mostly failing runs → read its
  logs; otherwise → pause it until it has work it can finish;
- it needs CHURN or more calls per issue closed: each beat on an open issue wakes the model
  again, so → a longer heartbeat interval (twice today's);
- it pays EXPENSIVE× or more the median per issue closed of the company's other agents (and
  at least $1 this month): → a cheaper model, naming the one the company's cheapest closer uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from core.durations import duration_text
from core.models import Agent
from core.reports.costs import MonthCosts, Usage

MIN_CALLS = 3  # fewer calls than this is too little to judge an agent by
CHURN = 4.0  # calls per issue closed
EXPENSIVE = 3.0  # × the other agents' median cost per issue closed
EXPENSIVE_FLOOR = 1.0  # dollars this month: below it, a ratio is noise


@dataclass(frozen=True, slots=True)
class Flag:
    problem: str
    suggestion: str


@dataclass(frozen=True, slots=True)
class Roi:
    agent: Agent
    month: str
    usage: Usage
    closed: int
    flags: tuple[Flag, ...] = ()

    @property
    def work_calls(self) -> int:
        """LLM calls on work, not on planning it."""
        return self.usage.runs - self.usage.planning_runs

    @property
    def cost_per_closed(self) -> float | None:
        return self.usage.cost / self.closed if self.closed else None


def _per_closed(usage: Usage, closed: int) -> float | None:
    return usage.cost / closed if closed else None


def fleet_roi(month: MonthCosts, agents: Sequence[Agent]) -> list[Roi]:
    """Every agent's ROI this month (agents with no call and no closed issue included: an
    agent that cost nothing is a fine answer too), flagged agents first."""
    by_company: dict[str, list[tuple[Agent, float]]] = {}
    for a in agents:
        per = _per_closed(month.agents.get(a.id, Usage()), month.closed.get(a.id, 0))
        if per is not None:
            by_company.setdefault(a.company_id, []).append((a, per))
    out = []
    for a in agents:
        usage = month.agents.get(a.id, Usage())
        closed = month.closed.get(a.id, 0)
        flags = _flags(a, usage, closed, by_company.get(a.company_id, []))
        out.append(Roi(a, month.month, usage, closed, tuple(flags)))
    return sorted(out, key=lambda r: (not r.flags, -r.usage.cost, r.agent.id))


def _flags(
    agent: Agent, usage: Usage, closed: int, closers: list[tuple[Agent, float]]
) -> list[Flag]:
    calls = usage.runs - usage.planning_runs
    if calls < MIN_CALLS:
        return []
    out = []
    if closed == 0:
        problem = f"{calls} LLM calls and ${usage.cost:,.2f} this month, no issue closed"
        if usage.failed_runs * 2 >= calls:
            out.append(
                Flag(
                    f"{problem}; {usage.failed_runs} of the runs failed",
                    f"read why with /agent {agent.id} and fix that before it spends more",
                )
            )
        else:
            out.append(
                Flag(
                    problem,
                    f"pause it (/pause {agent.id}) until it has work it can finish, or give "
                    "it smaller issues",
                )
            )
        return out
    if calls / closed >= CHURN:
        longer = duration_text(agent.heartbeat_seconds * 2)
        out.append(
            Flag(
                f"{calls / closed:.0f} LLM calls per issue closed",
                f"a longer heartbeat interval: `heartbeat: {longer}` for it in the config "
                f"(now {duration_text(agent.heartbeat_seconds)}); every beat on an open issue "
                "wakes its model again",
            )
        )
    mine = usage.cost / closed
    # The company's median without the agent itself: with two closers, a median that
    # included it could never be a third of its own cost.
    others = [per for a, per in closers if a.id != agent.id]
    if others and usage.cost >= EXPENSIVE_FLOOR:
        typical = median(others)
        if typical > 0 and mine >= EXPENSIVE * typical:
            cheapest, low = min(closers, key=lambda x: (x[1], x[0].id))
            if cheapest.model != agent.model:
                change = f"{cheapest.id} closes issues for ${low:,.2f} each on {cheapest.model}"
            else:
                change = f"its model {agent.model} costs more than its work needs"
            out.append(
                Flag(
                    f"${mine:,.2f} per issue closed, {mine / typical:.0f}× the median of "
                    f"the company's other agents (${typical:,.2f})",
                    f"a cheaper model: {change}",
                )
            )
    return out
