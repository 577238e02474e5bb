"""The spend-velocity breaker: its trigger against a table (no clock, no store), then on real runs
through the watchdog: a runaway trips and is paused with the reason, once an hour; noise below
the floor and a new agent below multiple × floor never trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from queue_stack import Priced, audit_rows, queue_config, watchdog
from stack_helpers import Stack, open_stack

from core.alerting.book import AlertKind
from core.clock import ManualClock
from core.config.queues import SpendVelocity
from core.models import AgentStatus
from core.queues.breaker import MIN_HISTORY_HOURS, Velocity, velocities

DEFAULT = SpendVelocity()  # multiple 5, floor $2 or 2M tokens per hour
COST_OFF = SpendVelocity(floor_usd=0)


@pytest.mark.parametrize(
    ("cost", "tokens", "base_cost", "base_tokens", "hours", "cfg", "trips"),
    [
        (6.0, 1_000, 1.0, 500.0, 10, DEFAULT, True),  # 6x its own rate, above the floor
        (4.0, 1_000, 1.0, 500.0, 10, DEFAULT, False),  # 4x: within its multiple
        (2.0, 0, 0.4, 0.0, 10, DEFAULT, True),  # at the floor and at 5x
        (1.5, 1_000, 0.01, 500.0, 10, DEFAULT, False),  # 150x, but noise below the floor
        (1.99, 0, 0.2, 0.0, 10, DEFAULT, False),
        (9.99, 0, 0.0, 0.0, 0, DEFAULT, False),  # no history: below multiple x floor
        (10.0, 0, 0.0, 0.0, 0, DEFAULT, True),  # no history: at multiple x floor
        # Too little history is none: 6x a rate from a few hours is no runaway yet.
        (6.0, 1_000, 1.0, 500.0, MIN_HISTORY_HOURS - 1, DEFAULT, False),
        (10.0, 1_000, 1.0, 500.0, MIN_HISTORY_HOURS - 1, DEFAULT, True),
        (6.0, 1_000, 1.0, 500.0, MIN_HISTORY_HOURS, DEFAULT, True),
        (0.0, 3_000_000, 0.0, 100_000.0, 10, DEFAULT, True),  # billed at 0: by tokens
        (0.0, 1_900_000, 0.0, 1_000.0, 10, DEFAULT, False),  # below the token floor
        (0.0, 9_999_999, 0.0, 0.0, 0, DEFAULT, False),
        (0.0, 10_000_000, 0.0, 0.0, 0, DEFAULT, True),
        (50.0, 1_000, 1.0, 1_000.0, 10, COST_OFF, False),  # only tokens count
    ],
)
def test_trips_above_multiple_and_floor(
    cost: float,
    tokens: int,
    base_cost: float,
    base_tokens: float,
    hours: int,
    cfg: SpendVelocity,
    trips: bool,
) -> None:
    v = Velocity("ali-cto", cost, tokens, base_cost, base_tokens, hours)
    assert v.tripped(cfg) is trips


def test_describe() -> None:
    assert Velocity("a", 6.0, 3_000, 0.5, 10.0, 10).describe() == (
        "spent $6.00 and 3,000 tokens in the last hour, 12× its usual $0.50/h"
    )
    assert Velocity("a", 10.0, 0, 0.0, 0.0, 0).describe() == (
        "spent $10.00 and 0 tokens in the last hour, with too little history to compare "
        "(above the floor × multiple)"
    )


HOUR = 3600.0


async def _spend(s: Stack, price: Priced, agent_id: str, cost: float, runs: int = 1) -> None:
    """`runs` runs of the agent, each costing `cost` and 1,000 tokens, started now."""
    price.price[agent_id] = (cost, 1_000)
    for _ in range(runs):
        await s.service.file_issue(title="work", assignee=agent_id, actor="al")
        await s.scheduler.drain()


async def _status(s: Stack, agent_id: str) -> tuple[AgentStatus, str]:
    agent = await s.service.agent(agent_id)
    return agent.status, agent.reason_code


async def test_a_runaway_is_paused_once_an_hour(tmp_path: Path, clock: ManualClock) -> None:
    config = queue_config(tmp_path, monitors={"spend_velocity": {"pause": True}})
    price = Priced()
    t0 = clock.now()
    async with open_stack(tmp_path, clock, config=config, behaviour=price) as s:
        for k in range(10):  # ten hours of history: cto $0.50/h, qa-1 $0.01/h
            clock.set(t0 + k * HOUR + 60)
            await _spend(s, price, "ali-cto", 0.5)
            await _spend(s, price, "ali-qa-1", 0.01)
        clock.set(t0 + 10 * HOUR + 600)
        await _spend(s, price, "ali-cto", 2.0, runs=3)  # $6: 12x its own rate
        await _spend(s, price, "ali-qa-1", 1.5)  # 150x, but below the $2 floor
        await _spend(s, price, "mat-ceo", 9.0)  # new: below 5 x the floor
        await _spend(s, price, "ali-cmo", 10.0)  # new: at 5 x the floor
        found = {v.agent_id: v for v in await velocities(s.db, DEFAULT, clock.now())}
        assert sorted(found) == ["ali-cmo", "ali-cto"]
        cto = found["ali-cto"]
        assert (cto.cost, cto.tokens, cto.baseline_cost, cto.history_hours) == (6.0, 3_000, 0.5, 10)
        async with watchdog(s) as w:
            [alert] = await w.alerts(AlertKind.SPEND_VELOCITY)
            assert sorted((m.agent_id, m.detail) for m in alert.active_members) == [
                ("ali-cmo", found["ali-cmo"].describe()),
                ("ali-cto", "spent $6.00 and 3,000 tokens in the last hour, 12× its usual $0.50/h"),
            ]
            assert await _status(s, "ali-cto") == (AgentStatus.PAUSED, "spend_velocity")
            assert (await s.service.agent("ali-cto")).reason == (
                "spend-velocity breaker: " + cto.describe()
            )
            assert await _status(s, "ali-cmo") == (AgentStatus.PAUSED, "spend_velocity")
            for quiet in ("ali-qa-1", "mat-ceo"):
                assert await _status(s, quiet) == (AgentStatus.IDLE, "")
            assert ("fleetbot:breaker", "agent.pause", "ali-cto") in await audit_rows(
                s.service, "agent.pause"
            )
            # The owner resumes it: the breaker does not pause it again within the hour.
            await s.service.resume("ali-cto", "alice")
            clock.advance(600)
            [alert] = await w.alerts(AlertKind.SPEND_VELOCITY)
            assert await _status(s, "ali-cto") == (AgentStatus.IDLE, "")
            details = {m.agent_id: m.detail for m in alert.active_members}
            assert details["ali-cmo"].endswith(": paused")
            assert not details["ali-cto"].endswith(": paused")
            trips = "SELECT count(*) FROM breaker_trips WHERE agent_id = 'ali-cto'"
            assert await s.db.scalar(trips) == 1
            # An hour on, still running away: paused again.
            clock.set(t0 + 11 * HOUR + 900)
            await _spend(s, price, "ali-cto", 2.0, runs=3)
            await w.monitors.run()
            assert await _status(s, "ali-cto") == (AgentStatus.PAUSED, "spend_velocity")
            assert await s.db.scalar(trips) == 2


async def test_without_pause_it_only_alerts(tmp_path: Path, clock: ManualClock) -> None:
    price = Priced()
    async with open_stack(tmp_path, clock, config=queue_config(tmp_path), behaviour=price) as s:
        await _spend(s, price, "ali-cto", 12.0)
        async with watchdog(s) as w:
            [alert] = await w.alerts(AlertKind.SPEND_VELOCITY)
            assert [m.agent_id for m in alert.active_members] == ["ali-cto"]
        assert await _status(s, "ali-cto") == (AgentStatus.IDLE, "")
        rows = await s.db.fetchall("SELECT agent_id, paused FROM breaker_trips")
    assert [tuple(r) for r in rows] == [("ali-cto", 0)]
