"""bench/queues.py's breaker scenario: a week of normal spend for the design fleet, then one
agent's runaway loop, with a noisy agent below the floor and a busy one within its rate beside
it (split out of bench/queues.py to keep each file about one simulation)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _fleet import (
    DESIGN_FLEET,
    WEEKEND,
    design_config,
    open_core,
    poisson,
    time_of_day,
)

from core.alerting.book import AlertBook
from core.alerting.outbox import Outbox
from core.alerting.watchdog import Monitors
from core.clock import ManualClock, utc
from core.config.queues import SpendVelocity
from core.engine.recovery import Recovery
from core.engine.scheduler import Scheduler
from core.events import EventBus
from core.models import Agent, RunOutcome
from core.queues.breaker import MIN_HISTORY_HOURS
from core.reports.costs import CostBook
from core.runtimes.base import Dispatch, DispatchResult, Runtime
from core.service import FleetService
from core.store import velocity as velocity_store

HOUR = 3600.0
DAY = 86400.0


RUNAWAY, NOISY, BUSY = "ali-cto", "mat-cm", "ali-coo"
BASELINE_DAYS = 7
PRICE = 5e-6  # dollars per token, blended: a run's tokens follow from its cost
ORDINARY = (0.01, 0.08)  # dollars per run
SPEND = {RUNAWAY: (0.05, 0.25), NOISY: (0.005, 0.03), BUSY: (0.5, 0.9)}
SPIKE_SPEND = (0.15, 0.3)  # the noisy agent's spikes: tens of times its usual, under the floor
PER_DAY = {RUNAWAY: 8.0, NOISY: 1.5}  # issues per weekday; others 3, BUSY 1-3 in each work hour
LOOP_SPEND = (0.25, 0.45)
LOOP_TITLE = "Retry the failed deploy"
SPIKE_TITLE = "Research sprint"


class SpendingAgent(Runtime):
    """A simulated agent whose runs cost what its profile says. A run on the loop's issue costs
    far more, and its follow-up is filed a minute later: the runaway loop."""

    kind = "simulated"

    def __init__(
        self,
        service: FleetService,
        rng: random.Random,
        spend: tuple[float, float],
        follow_up: Callable[[str], None],
    ) -> None:
        self.service = service
        self.rng = rng
        self.spend = spend
        self.follow_up = follow_up

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        loop = str(job.issue.get("title", "")).startswith(LOOP_TITLE)
        spike = str(job.issue.get("title", "")).startswith(SPIKE_TITLE)
        cost = self.rng.uniform(*(LOOP_SPEND if loop else SPIKE_SPEND if spike else self.spend))
        tokens = int(cost / PRICE)
        await self.service.report_usage(
            job.run_id,
            job.agent_id,
            turns=8 if loop else 3,
            input_tokens=tokens * 9 // 10,
            output_tokens=tokens - tokens * 9 // 10,
            cost=cost,
            model=job.model,
        )
        if loop:
            self.follow_up(job.agent_id)
        summary = f"Worked on {job.issue_id}"
        await self.service.finish_run(job.run_id, job.agent_id, RunOutcome.DONE, summary=summary)
        return DispatchResult(finished=True, outcome=RunOutcome.DONE, summary=summary)


@dataclass(slots=True)
class Breaker:
    loop_start: float = 0.0
    paused_at: float | None = None
    status: str = ""
    reason_code: str = ""
    loop_runs: int = 0  # runs of the runaway from its loop's start (its other work too)
    loop_cost: float = 0.0
    alerts: int = 0  # spend_velocity alerts raised
    trips: list[tuple[str, float, bool]] = field(default_factory=list)
    passes: int = 0  # monitor passes run
    runs: int = 0
    worst: dict[str, tuple[float, float]] = field(default_factory=dict)  # hour, ratio
    wall: float = 0.0

    @property
    def minutes(self) -> float:
        return math.inf if self.paused_at is None else (self.paused_at - self.loop_start) / 60


def breaker_filings(rng: random.Random, start: float) -> list[tuple[float, str, str]]:
    """A week of normal work for every agent, the noisy one with a few spikes."""
    out: list[tuple[float, str, str]] = []
    agents = [f"{cid[:3]}-{role}" for cid, (_, _, roles) in DESIGN_FLEET.items() for role in roles]
    for day in range(BASELINE_DAYS + 1):
        midnight = start + day * DAY
        weekend = utc(midnight).weekday() >= 5
        for agent_id in agents:
            if agent_id == BUSY:
                for hour in range(8, 18):
                    for _ in range(0 if weekend else rng.randint(1, 3)):
                        at = midnight + (hour + rng.random()) * HOUR
                        out.append((at, agent_id, "Busy work"))
                continue
            mean = PER_DAY.get(agent_id, 3.0) * (WEEKEND if weekend else 1.0)
            for _ in range(poisson(rng, mean)):
                out.append((midnight + time_of_day(rng), agent_id, "Work"))
    for day in rng.sample(range(BASELINE_DAYS), 3):
        at = start + day * DAY + rng.uniform(9 * HOUR, 17 * HOUR)
        out += [(at + rng.uniform(0, 40 * 60), NOISY, SPIKE_TITLE) for _ in range(5)]
    return out


async def simulate_breaker(root: Path, *, seed: int) -> Breaker:
    started = time.perf_counter()
    rng = random.Random(seed)
    out = Breaker()
    clock = ManualClock()
    start = clock.now()
    base = design_config(root, failure_rate=0.0, seed=seed)
    velocity = SpendVelocity(pause=True)
    config = base.model_copy(
        update={"monitors": base.monitors.model_copy(update={"spend_velocity": velocity})}
    )
    out.loop_start = start + BASELINE_DAYS * DAY + rng.uniform(10 * HOUR, 15 * HOUR)
    end = out.loop_start + 4 * HOUR
    queue = [f for f in breaker_filings(rng, start) if f[0] < end]
    queue.append((out.loop_start, RUNAWAY, f"{LOOP_TITLE} (1)"))
    queue.sort()
    events = EventBus()
    async with open_core(config, clock, events) as (db, auth, service):
        runtimes: dict[str, SpendingAgent] = {}
        loops = 1

        def follow_up(agent_id: str) -> None:
            nonlocal loops
            loops += 1
            queue.append((clock.now() + 60, agent_id, f"{LOOP_TITLE} ({loops})"))
            queue.sort()

        def runtime(agent: Agent) -> Runtime:
            found = runtimes.get(agent.id)
            if found is None:
                spend = SPEND.get(agent.id, ORDINARY)
                found = SpendingAgent(
                    service, random.Random(f"{seed}:{agent.id}"), spend, follow_up
                )
                runtimes[agent.id] = found
            return found

        scheduler = Scheduler(service, runtime, clock, auth=auth, api_url="http://127.0.0.1:9")
        alerts = AlertBook(db, clock, config, Outbox(db, clock, config))
        monitors = Monitors(
            service, alerts, CostBook(db, clock), Recovery(service, config), config, clock
        )
        events.subscribe(monitors.on_event)

        async def settle() -> None:
            await scheduler.drain()
            await monitors.settle()
            await scheduler.drain()

        next_hourly = start + HOUR
        next_pass = next_hourly
        try:
            await scheduler.start(periodic=False)
            while True:
                due = await scheduler.heartbeat.next_due_at()
                first = queue[0][0] if queue else math.inf
                when = min(math.inf if due is None else due, first, next_pass)
                if when > end:
                    break
                clock.set(max(when, clock.now()))
                now = clock.now()
                runs_before = int(await db.scalar("SELECT count(*) FROM runs"))
                while queue and queue[0][0] <= now:
                    _, agent_id, title = queue.pop(0)
                    await service.file_issue(title=title, assignee=agent_id, actor="owner")
                await settle()
                await scheduler.tick()
                await settle()
                if now >= next_pass:
                    await monitors.run()
                    await settle()
                    out.passes += 1
                    if now >= next_hourly:
                        next_hourly += HOUR
                    next_pass = next_hourly
                if int(await db.scalar("SELECT count(*) FROM runs")) > runs_before:
                    # The monitors pass every minute; a pass in a minute in which no run
                    # started sees no more spend than the one before it.
                    after = start + (math.floor((now - start) / 60) + 1) * 60
                    next_pass = min(next_pass, after)
        finally:
            await monitors.aclose()
            await scheduler.aclose()
        out.trips = await velocity_store.trips(db.reader, start)
        out.paused_at = next((at for a, at, p in out.trips if a == RUNAWAY and p), None)
        row = await db.fetchone("SELECT status, reason_code FROM agents WHERE id = ?", (RUNAWAY,))
        assert row is not None
        out.status, out.reason_code = row[0], row[1]
        row = await db.fetchone(
            "SELECT count(*), coalesce(sum(cost), 0) FROM runs WHERE agent_id = ? "
            "AND started_at >= ?",
            (RUNAWAY, out.loop_start),
        )
        assert row is not None
        out.loop_runs, out.loop_cost = int(row[0]), float(row[1])
        out.alerts = int(
            await db.scalar("SELECT count(*) FROM alerts WHERE kind = 'spend_velocity'")
        )
        out.runs = int(await db.scalar("SELECT count(*) FROM runs"))
        for agent_id in (NOISY, BUSY, RUNAWAY):
            runs = await db.fetchall(
                "SELECT started_at, cost FROM runs WHERE agent_id = ? AND started_at < ? "
                "ORDER BY started_at",
                (agent_id, out.loop_start),
            )
            out.worst[agent_id] = _worst_hour([(r[0], r[1]) for r in runs], velocity.baseline)
    out.wall = time.perf_counter() - started
    return out


def _worst_hour(runs: list[tuple[float, float]], window: float) -> tuple[float, float]:
    """(the most spent in an hour, the most an hour's spend was times the agent's baseline at
    the time, once it had one): the two sides of the breaker's test, at every run's start."""
    worst = ratio = 0.0
    for t, _ in runs:
        spent = sum(c for s, c in runs if t - HOUR < s <= t)
        past = [(s, c) for s, c in runs if t - window <= s < t - HOUR]
        hours = len({int(s // HOUR) for s, _ in past})
        worst = max(worst, spent)
        if hours >= MIN_HISTORY_HOURS:
            ratio = max(ratio, spent / (sum(c for _, c in past) / hours))
    return worst, ratio
