"""The spend-velocity breaker: an agent spending far above its own recent rate, caught within
the hour instead of at the monthly budget (a loop, a runaway agent, a model switched to an
expensive one).

Per agent, the spend of the last hour against its baseline: the mean spend per hour in which it
ran over `monitors.spend_velocity.baseline` (hours without a run would make a daytime agent's
nights dilute it). It trips above `multiple` × the baseline and above the floor (`floor_usd`
per hour, or `floor_tokens` for models billed at 0), which keeps small agents' noise from
tripping it; an agent with less history than MIN_HISTORY_HOURS (a new one) trips at `multiple`
× the floor, since one or two hours are no baseline. A trip is one
`spend_velocity` alert (core.alerting.monitors) and, with `pause: true`, a pause with the
reason (core.alerting.watchdog), at most once an hour per agent.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config.queues import SpendVelocity
from core.store import velocity as store
from core.store.db import Database

HOUR = store.HOUR
# Hours with a run below which there is no baseline yet: against its first hour or two, a new
# agent's first busy hour would look like a runaway and be paused.
MIN_HISTORY_HOURS = 6


def over_floor(cost: float, tokens: int, cfg: SpendVelocity, times: float = 1.0) -> bool:
    """Above `times` × the floor, in dollars or (for models billed at 0) in tokens."""
    return (cfg.floor_usd > 0 and cost >= times * cfg.floor_usd) or (
        cfg.floor_tokens > 0 and tokens >= times * cfg.floor_tokens
    )


@dataclass(frozen=True, slots=True)
class Velocity:
    agent_id: str
    cost: float  # the last hour
    tokens: int
    baseline_cost: float  # per hour with a run, over the baseline window; 0: no history
    baseline_tokens: float
    history_hours: int

    def tripped(self, cfg: SpendVelocity) -> bool:
        by_cost = cfg.floor_usd > 0 and self.cost >= cfg.floor_usd
        by_tokens = cfg.floor_tokens > 0 and self.tokens >= cfg.floor_tokens
        if self.history_hours < MIN_HISTORY_HOURS:
            return over_floor(self.cost, self.tokens, cfg, cfg.multiple)
        return (by_cost and self.cost >= cfg.multiple * self.baseline_cost) or (
            by_tokens and self.tokens >= cfg.multiple * self.baseline_tokens
        )

    def ratio(self) -> float | None:
        if self.history_hours < MIN_HISTORY_HOURS:
            return None
        if self.baseline_cost > 0:
            return self.cost / self.baseline_cost
        if self.baseline_tokens > 0:
            return self.tokens / self.baseline_tokens
        return None

    def describe(self) -> str:
        spent = f"spent ${self.cost:,.2f} and {self.tokens:,} tokens in the last hour"
        ratio = self.ratio()
        if ratio is None:
            return f"{spent}, with too little history to compare (above the floor × multiple)"
        return f"{spent}, {ratio:,.0f}× its usual ${self.baseline_cost:,.2f}/h"


async def velocities(db: Database, cfg: SpendVelocity, now: float) -> list[Velocity]:
    """The agents that tripped the breaker now. Only agents above the floor in the last hour
    have their history read, so a quiet fleet costs one indexed query."""
    out = []
    for agent_id, cost, tokens in await store.last_hour(db.reader, now):
        if not over_floor(cost, tokens, cfg):
            continue
        h_cost, h_tokens, hours = await store.history(
            db.reader, agent_id, now - cfg.baseline, now - HOUR
        )
        v = Velocity(
            agent_id,
            cost,
            tokens,
            h_cost / hours if hours else 0.0,
            h_tokens / hours if hours else 0.0,
            hours,
        )
        if v.tripped(cfg):
            out.append(v)
    return out
