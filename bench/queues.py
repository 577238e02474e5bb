"""Queues that feed themselves: a simulated month of the design's 12-agent fleet under three
policies, then the spend-velocity breaker against a runaway loop.

The real core (store, key ring, service, heartbeat, scheduler, the Feeder with its Planner, the
watchdog's Monitors, wired as core.fleet wires them) runs on a ManualClock. Every simulated run
is one LLM call. Work arrives at seeded times like a month of an owner's: an initial backlog,
weekday arrivals mostly in working hours with a quarter filed to the backlog, bursty weeks (a
triage session files a dozen issues within an hour, half to the backlog) and quiet weeks. The
same arrivals meet three policies:

  alerts only          defaults.backlog_promote 0 and no planner; the owner promotes the top
                       backlog items of idle agents by hand each weekday at 09:00 UTC
  backlog promotion    backlog_promote 1
  promotion + planner  and companies[].planner: the planner's simulated run files the next
                       work through the service (some of it to the backlog), as a real one does

The breaker scenario: a week of normal spend, then one agent runs away (each run files its
follow-up a minute later and costs ~20x its usual); monitors.spend_velocity.pause is true and
the monitors pass once a minute. An agent whose spend is noisy but stays below the floor, and a
busy one above the floor but within its usual rate, run alongside it.

    python bench/queues.py [--seed N] [--days N] [--failure-rate P]

The Feeder (routines, then the planner) runs once a minute in `fleetbot run`; here it runs at
the first minute after anything changed (a filing, a beat, a run) and when a planner's period
ends, since a minute in which nothing changed would decide what the one before it did. Likewise
the breaker's monitor passes: the minute after a run started, and hourly.

Targets: with promotion, 0 agent-hours in which an agent had nothing to do while its own backlog
held work (promotion cannot hand a teammate's backlog over: that figure is printed apart);
planning calls <= 1 per company per empty period; LLM calls <= issues worked + retries +
planning calls; the runaway paused <= 60 min after its loop starts; no other agent tripped;
wall < 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _fleet import DESIGN_FLEET, SimulatedPool, design_config, verdict

from core.alerting.book import AlertBook
from core.alerting.outbox import Outbox
from core.alerting.watchdog import Monitors
from core.auth.agent_auth import AgentAuth, KeyRingFile
from core.auth.keyring import KeyRing
from core.clock import ManualClock, utc
from core.config import Config
from core.config.queues import PlannerConfig, SpendVelocity
from core.engine.recovery import Recovery
from core.engine.scheduler import Scheduler
from core.events import EventBus
from core.models import PLANNER, Agent, IssueStatus, Priority, RunOutcome
from core.queues.breaker import MIN_HISTORY_HOURS
from core.queues.feeder import INTERVAL as FEED_INTERVAL, Feeder
from core.queues.planner import Planner
from core.reports.costs import CostBook
from core.runtimes.base import Dispatch, DispatchResult, Runtime
from core.service import FleetService
from core.store import issues as issue_store, velocity as velocity_store
from core.store.db import Database, fetch_all

DAYS = 30
HOUR = 3600.0
DAY = 86400.0
WEEKS = ("normal", "bursty", "quiet", "bursty", "quiet")  # the month's weeks, in order
RATE = {"normal": 5.0, "bursty": 5.0, "quiet": 0.4}  # issues per company per weekday
WEEKEND = 0.2  # share of a weekday's arrivals on Saturdays and Sundays
BACKLOG_SHARE = 0.25  # of everyday arrivals: "for later"
INITIAL_BACKLOG = 18  # per company, filed before the first heartbeat
BURSTS = 2  # per company per bursty week
TRIAGE = 3  # backlog items the owner promotes by hand per idle agent (alerts only)
GOALS = ["Ship the v2 onboarding", "Grow weekly active teams 10 %", "Keep churn under 3 %"]
PRIORITIES = ((Priority.CRITICAL, 0.03), (Priority.HIGH, 0.15), (Priority.LOW, 0.25))
MAX_PAUSE_MINUTES = 60.0
MAX_WALL = 60.0


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    promote: int  # defaults.backlog_promote
    planner: bool  # companies[].planner for both companies


POLICIES = (
    Policy("alerts only", 0, False),
    Policy("backlog promotion", 1, False),
    Policy("promotion + planner", 1, True),
)


@dataclass(frozen=True, slots=True)
class Filing:
    at: float
    company: str
    role: str
    backlog: bool
    priority: Priority


def _priority(rng: random.Random) -> Priority:
    roll = rng.random()
    for priority, share in PRIORITIES:
        if roll < share:
            return priority
        roll -= share
    return Priority.MEDIUM


def _poisson(rng: random.Random, mean: float) -> int:
    n, t = 0, rng.expovariate(1.0)
    while t < mean:
        n += 1
        t += rng.expovariate(1.0)
    return n


def _time_of_day(rng: random.Random) -> float:
    """Mostly working hours (08:00-18:00 UTC), sometimes any time."""
    if rng.random() < 0.85:
        return rng.uniform(8 * HOUR, 18 * HOUR)
    return rng.uniform(0, DAY)


def month_filings(rng: random.Random, start: float, days: int) -> list[Filing]:
    """The month's work, the same for every policy: seeded, by company."""
    out: list[Filing] = []
    for cid, (_, _, roles) in DESIGN_FLEET.items():
        for _ in range(INITIAL_BACKLOG):
            out.append(Filing(start, cid, rng.choice(roles), True, _priority(rng)))
        for day in range(days):
            kind = WEEKS[(day // 7) % len(WEEKS)]
            midnight = start + day * DAY
            mean = RATE[kind] * (WEEKEND if utc(midnight).weekday() >= 5 else 1.0)
            for _ in range(_poisson(rng, mean)):
                out.append(
                    Filing(
                        midnight + _time_of_day(rng),
                        cid,
                        rng.choice(roles),
                        rng.random() < BACKLOG_SHARE,
                        _priority(rng),
                    )
                )
        for week in range(math.ceil(days / 7)):
            if WEEKS[week % len(WEEKS)] != "bursty":
                continue
            for day in rng.sample(range(week * 7, min(days, week * 7 + 7)), BURSTS):
                at = start + day * DAY + rng.uniform(9 * HOUR, 16 * HOUR)
                for _ in range(rng.randint(10, 16)):
                    out.append(
                        Filing(
                            at + rng.uniform(0, HOUR),
                            cid,
                            rng.choice(roles),
                            rng.random() < 0.5,
                            _priority(rng),
                        )
                    )
    return sorted(out, key=lambda f: f.at)


def configure(base: Config, policy: Policy) -> Config:
    defaults = base.defaults.model_copy(update={"backlog_promote": policy.promote})
    planner = PlannerConfig(goals=GOALS) if policy.planner else None
    companies = [c.model_copy(update={"planner": planner}) for c in base.companies]
    return base.model_copy(update={"defaults": defaults, "companies": companies})


class PlanningAgent(Runtime):
    """The planner's agent: on a planning issue it files the next work through the service (as
    a real one does with `fleetbot agent file`), then reports and finishes like any run."""

    kind = "simulated"

    def __init__(
        self, inner: Runtime, service: FleetService, agent: Agent, rng: random.Random
    ) -> None:
        self.inner = inner
        self.service = service
        self.agent = agent
        self.rng = rng
        self.filed = 0

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        issue = await self.service.issue(job.issue_id)
        if issue.created_by == PLANNER:
            roles = DESIGN_FLEET[self.agent.company_id][2]
            for k in range(self.rng.randint(3, 5)):
                await self.service.file_issue(
                    title=f"{self.rng.choice(GOALS)}: next step {k + 1}",
                    assignee=self.rng.choice(roles),
                    company=self.agent.company_id,
                    actor=f"agent:{self.agent.id}",
                    priority=_priority(self.rng),
                    backlog=k >= 2,  # the first two now, the rest for later
                )
                self.filed += 1
        return await self.inner.dispatch(job)  # the pool closes the inner runtime


class PlanningPool(SimulatedPool):
    """SimulatedPool whose company roots plan when the planner wakes them."""

    def __init__(self, service: FleetService, seed: int) -> None:
        super().__init__(service)
        self.service = service
        self.seed = seed
        self.planners: dict[str, PlanningAgent] = {}

    def __call__(self, agent: Agent) -> Runtime:
        inner = super().__call__(agent)
        if agent.reports_to is not None:
            return inner
        found = self.planners.get(agent.id)
        if found is None:
            rng = random.Random(f"{self.seed}:{agent.id}")
            found = self.planners[agent.id] = PlanningAgent(inner, self.service, agent, rng)
        return found


class IdleWatch:
    """Per agent, the stretches in which it had nothing to do (idle, nothing workable) while
    backlog existed: its own, or anyone's in its company. Counted as agent-hours: the
    (agent, simulated hour) pairs such a stretch touched."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.since: dict[str, dict[str, float]] = {"own": {}, "company": {}}
        self.hours: dict[str, set[tuple[str, int]]] = {"own": set(), "company": set()}
        self.seconds: dict[str, float] = {"own": 0.0, "company": 0.0}

    def note(self, kind: str, agent_id: str, holds: bool, now: float) -> None:
        since = self.since[kind]
        if holds and agent_id not in since:
            since[agent_id] = now
        elif not holds and agent_id in since:
            self._close(kind, agent_id, since.pop(agent_id), now)

    def _close(self, kind: str, agent_id: str, t1: float, t2: float) -> None:
        if t2 <= t1:
            return
        self.seconds[kind] += t2 - t1
        first = int((t1 - self.start) // HOUR)
        last = math.ceil((t2 - self.start) / HOUR)
        self.hours[kind].update((agent_id, h) for h in range(first, last))

    def finish(self, now: float) -> None:
        for kind, since in self.since.items():
            for agent_id, t1 in since.items():
                self._close(kind, agent_id, t1, now)
            since.clear()


_IDLE = (
    "SELECT a.id, a.status = 'idle' AND NOT EXISTS (SELECT 1 FROM issues WHERE "
    f"issues.assignee_id = a.id AND {issue_store.WORKABLE}), EXISTS (SELECT 1 FROM issues b "
    "WHERE b.assignee_id = a.id AND b.status = 'backlog'), EXISTS (SELECT 1 FROM issues c "
    "WHERE c.company_id = a.company_id AND c.status = 'backlog') FROM agents a "
    "WHERE a.deleted_at IS NULL"
)


@dataclass(slots=True)
class Periods:
    """A company's empty periods: gaps in which it had no open work (inbox or backlog)."""

    count: int = 0
    hours: float = 0.0
    planning: int = 0  # planning issues filed
    worst: int = 0  # most planning issues filed within one period
    outside: int = 0  # planning issues filed while the company had work


@dataclass(slots=True)
class Month:
    policy: Policy
    filed: int = 0
    calls: int = 0  # runs started: each one woke a model
    done: int = 0  # work issues done (not planning issues)
    worked: int = 0  # work issues with at least one run
    retries: int = 0  # runs beyond the first on the same issue
    planning: int = 0  # planning issues filed (one deliberate call each)
    planning_runs: int = 0
    planner_filed: int = 0
    promoted: int = 0  # by fleetbot (core.queues.backlog)
    by_hand: int = 0  # by the owner's morning triage
    backlog_left: int = 0
    open_left: int = 0
    resets: int = 0
    saved: int = 0  # heartbeats that found no work and woke nothing
    idle_own: int = 0  # agent-hours: idle while its own backlog held work
    idle_company: int = 0  # agent-hours: idle while its company's backlog held work
    idle_own_s: float = 0.0
    periods: dict[str, Periods] = field(default_factory=dict)
    wall: float = 0.0

    @property
    def budget(self) -> int:
        """The calls the month's work justifies: one per issue worked, its retries, and one
        per planning issue."""
        return self.worked + self.retries + self.planning


async def _operator_resets(db: Database, service: FleetService, now: float) -> int:
    """Errored agents are reset at their next heartbeat, as the field notes' owner did."""
    errored = await db.fetchall(
        "SELECT id FROM agents WHERE status = 'error' AND deleted_at IS NULL "
        "AND next_heartbeat_at <= ?",
        (now,),
    )
    for row in errored:
        await service.reset(row[0], "owner")
    return len(errored)


async def _triage(db: Database, service: FleetService) -> int:
    """The owner's morning: each agent with an empty inbox gets its top backlog items by hand."""
    n = 0
    for agent in await service.agents():
        if await issue_store.has_inbox(db.reader, agent.id):
            continue
        for item in await issue_store.backlog(db.reader, assignee_id=agent.id, limit=TRIAGE):
            await service.move(item.id, IssueStatus.TODO, "owner", "promoted by hand")
            n += 1
    return n


def _next_minute(t: float, start: float) -> float:
    """The first tick of a once-a-minute job (phased from `start`) at or after `t`."""
    return start + math.ceil((t - start) / FEED_INTERVAL) * FEED_INTERVAL


async def simulate_month(
    root: Path, policy: Policy, filings: list[Filing], *, seed: int, days: int, failure: float
) -> Month:
    started = time.perf_counter()
    month = Month(policy, filed=len(filings))
    clock = ManualClock()
    start = clock.now()
    end = start + days * DAY
    config = configure(design_config(root, failure_rate=failure, seed=seed), policy)
    KeyRing.create(config.auth.keyring, start)
    queue = list(filings)
    idle = IdleWatch(start)
    async with Database(config.storage.path) as db:
        auth = AgentAuth(KeyRingFile(config.auth.keyring), config.auth, clock)
        events = EventBus()
        service = FleetService(db, config, clock, events, token_check=auth.check_file)
        await service.sync_config()
        for agent in await service.agents():
            auth.issue(agent, fsync=False)
        pool = PlanningPool(service, seed)
        scheduler = Scheduler(service, pool, clock, auth=auth, api_url="http://127.0.0.1:9")
        planner = Planner(service, db, config, clock, events)
        feeder = Feeder(service, planner)
        alerts = AlertBook(db, clock, config, Outbox(db, clock, config))
        monitors = Monitors(
            service, alerts, CostBook(db, clock), Recovery(service, config), config, clock,
            planner=planner,
        )  # fmt: skip
        # The monitors' event side, as in core.fleet: new work ends a queue's empty streak.
        events.subscribe(monitors.on_event)

        async def settle() -> None:
            await scheduler.drain()
            await monitors.settle()
            await scheduler.drain()

        # Without a planner (and no routines here) the Feeder has nothing to do: not ticked.
        next_feed = start if policy.planner else math.inf
        next_triage = start + 9 * HOUR
        try:
            await scheduler.start(periodic=False)
            while True:
                due = await scheduler.heartbeat.next_due_at()
                when = min(
                    math.inf if due is None else due,
                    queue[0].at if queue else math.inf,
                    next_feed,
                    next_triage if policy.promote == 0 else math.inf,
                )
                if when > end:
                    break
                clock.set(max(when, clock.now()))
                now = clock.now()
                acted = False
                while queue and queue[0].at <= now:
                    f = queue.pop(0)
                    await service.file_issue(
                        title=f"{'Later' if f.backlog else 'Task'} for the {f.role}",
                        assignee=f.role,
                        company=f.company,
                        actor="owner",
                        priority=f.priority,
                        backlog=f.backlog,
                    )
                    acted = True
                if policy.promote == 0 and now >= next_triage:
                    if utc(now).weekday() < 5:
                        month.by_hand += await _triage(db, service)
                    next_triage += DAY
                    acted = True
                month.resets += await _operator_resets(db, service, now)
                # Wake-ups from filings and resets finish before the sweep, so a woken agent
                # is not also swept in the same instant.
                await settle()
                report = await scheduler.tick()
                acted = acted or bool(report.beats)
                await settle()
                if now >= next_feed:
                    fed = await feeder.tick()
                    await settle()
                    month.planning += len(fed.planned)
                    acted = acted or bool(fed.planned)
                    next_feed = math.inf
                    for issue in fed.planned:  # the planner's own bound ends then
                        next_feed = min(next_feed, issue.created_at + planner_every(config))
                if acted and policy.planner:
                    # The feeder runs every minute; a minute with nothing new since the last
                    # one (no filing, no beat, no run) would see what that one saw.
                    next_feed = min(next_feed, _next_minute(now, start))
                for agent_id, free, own, company in await fetch_all(db.reader, _IDLE, {"now": now}):
                    idle.note("own", agent_id, bool(free and own), now)
                    idle.note("company", agent_id, bool(free and company), now)
            clock.set(max(end, clock.now()))
            idle.finish(clock.now())
        finally:
            await monitors.aclose()
            await scheduler.aclose()
            await pool.aclose()
        await _count(db, month, start, clock.now())
        month.planner_filed = sum(p.filed for p in pool.planners.values())
    month.idle_own = len(idle.hours["own"])
    month.idle_company = len(idle.hours["company"])
    month.idle_own_s = idle.seconds["own"]
    month.wall = time.perf_counter() - started
    return month


def planner_every(config: Config) -> float:
    """The shortest `planner.every` of the companies that plan."""
    return min((c.planner.every for c in config.companies if c.planner), default=math.inf)


async def _count(db: Database, month: Month, start: float, end: float) -> None:
    month.calls = int(await db.scalar("SELECT count(*) FROM runs"))
    month.retries = int(
        await db.scalar(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM runs GROUP BY issue_id)"
        )
    )
    work = "created_by != ?"
    month.done = int(
        await db.scalar(f"SELECT count(*) FROM issues WHERE status = 'done' AND {work}", (PLANNER,))
    )
    month.worked = int(
        await db.scalar(
            "SELECT count(DISTINCT r.issue_id) FROM runs r JOIN issues i ON i.id = r.issue_id "
            f"WHERE i.{work}",
            (PLANNER,),
        )
    )
    month.planning_runs = int(
        await db.scalar(
            "SELECT count(*) FROM runs r JOIN issues i ON i.id = r.issue_id WHERE i.created_by = ?",
            (PLANNER,),
        )
    )
    month.promoted = int(
        await db.scalar("SELECT count(*) FROM audit WHERE action = 'issue.promote'")
    )
    month.backlog_left = int(await db.scalar("SELECT count(*) FROM issues WHERE status='backlog'"))
    month.open_left = int(
        await db.scalar("SELECT count(*) FROM issues WHERE status NOT IN ('done','cancelled')")
    )
    month.saved = int(
        await db.scalar("SELECT coalesce(sum(count), 0) FROM heartbeats WHERE outcome='no_work'")
    )
    for cid in DESIGN_FLEET:
        month.periods[cid] = await _periods(db, cid, start, end)


async def _periods(db: Database, company_id: str, start: float, end: float) -> Periods:
    """Gaps in the union of the company's work issues' open spans [filed, closed]; each
    planning issue is counted in the gap (a, b] it was filed in."""
    spans = await db.fetchall(
        "SELECT created_at, CASE WHEN status IN ('done', 'cancelled', 'blocked') THEN updated_at "
        "ELSE ? END FROM issues WHERE company_id = ? AND created_by != ? ORDER BY created_at",
        (end, company_id, PLANNER),
    )
    plans = [
        r[0]
        for r in await db.fetchall(
            "SELECT created_at FROM issues WHERE company_id = ? AND created_by = ?",
            (company_id, PLANNER),
        )
    ]
    gaps: list[tuple[float, float]] = []
    covered = start
    for opened, closed in spans:
        if opened > covered:
            gaps.append((covered, opened))
        covered = max(covered, closed)
    if covered < end:
        gaps.append((covered, end))
    out = Periods(count=len(gaps), hours=sum(b - a for a, b in gaps) / HOUR)
    out.planning = len(plans)
    for a, b in gaps:
        inside = sum(1 for t in plans if a < t <= b)
        out.worst = max(out.worst, inside)
    out.outside = sum(1 for t in plans if not any(a < t <= b for a, b in gaps))
    return out


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
            for _ in range(_poisson(rng, mean)):
                out.append((midnight + _time_of_day(rng), agent_id, "Work"))
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
    KeyRing.create(config.auth.keyring, start)
    async with Database(config.storage.path) as db:
        auth = AgentAuth(KeyRingFile(config.auth.keyring), config.auth, clock)
        events = EventBus()
        service = FleetService(db, config, clock, events, token_check=auth.check_file)
        await service.sync_config()
        for agent in await service.agents():
            auth.issue(agent, fsync=False)
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


def _row(label: str, values: list[str], note: str = "") -> None:
    cells = "".join(f"{v:>21}" for v in values)
    print(f"  {label:<34}{cells}  {note}".rstrip())


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--failure-rate", type=float, default=0.05)
    args = parser.parse_args(argv)
    # Injected run failures are expected here; the scheduler's warnings about them are noise.
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    filings = month_filings(random.Random(args.seed), ManualClock().now(), args.days)
    months: list[Month] = []
    with tempfile.TemporaryDirectory(prefix="fleetbot-bench-") as tmp:
        for k, policy in enumerate(POLICIES):
            root = Path(tmp) / f"policy{k}"
            root.mkdir()
            months.append(
                await simulate_month(
                    root,
                    policy,
                    filings,
                    seed=args.seed,
                    days=args.days,
                    failure=args.failure_rate,
                )
            )
        root = Path(tmp) / "breaker"
        root.mkdir()
        brk = await simulate_breaker(root, seed=args.seed)
    wall = time.perf_counter() - started

    backlog = sum(1 for f in filings if f.backlog)
    print(
        f"queues month: 12 agents (6 aliens + 6 matrix), 4h heartbeat, {args.days} days "
        f"(weeks: {', '.join(WEEKS[: math.ceil(args.days / 7)])}), {len(filings)} issues filed "
        f"by the owner ({backlog} to the backlog, {INITIAL_BACKLOG * 2} of them before the first "
        f"heartbeat), failure rate {args.failure_rate:g}, seed {args.seed}"
    )
    _row("", [m.policy.name for m in months])
    _row("issues filed (owner + planner)", [f"{m.filed} + {m.planner_filed}" for m in months])
    _row("issues done", [str(m.done) for m in months], "planning issues not counted")
    _row("LLM calls (runs started)", [str(m.calls) for m in months])
    _row(
        "  worked + retries + planning",
        [f"{m.budget} ({m.worked}+{m.retries}+{m.planning})" for m in months],
        "target: calls <= this",
    )
    _row("planning calls (issues / runs)", [f"{m.planning} / {m.planning_runs}" for m in months])
    _row("backlog promoted (core / by hand)", [f"{m.promoted} / {m.by_hand}" for m in months])
    _row(
        "idle agent-hours, own backlog",
        [f"{m.idle_own} ({m.idle_own_s / HOUR:.1f} h)" for m in months],
        "target 0 with promotion",
    )
    _row(
        "idle agent-hours, company backlog",
        [str(m.idle_company) for m in months],
        "others' backlog: not promotable",
    )
    for cid in DESIGN_FLEET:
        _row(
            f"{cid}: empty periods (hours)",
            [f"{m.periods[cid].count} ({m.periods[cid].hours:.0f} h)" for m in months],
        )
        _row(
            f"{cid}: planning, most in one",
            [f"{m.periods[cid].planning}, {m.periods[cid].worst}" for m in months],
            "target <= 1 per empty period",
        )
    _row("heartbeats saved (no work)", [str(m.saved) for m in months])
    _row("open at the end (in backlog)", [f"{m.open_left} ({m.backlog_left})" for m in months])
    _row("operator resets", [str(m.resets) for m in months])
    _row("wall time", [f"{m.wall:.2f}s" for m in months])

    sv = SpendVelocity(pause=True)
    print(
        f"breaker: {BASELINE_DAYS} days of normal spend for the fleet, then {RUNAWAY} loops "
        f"(a run a minute at ${LOOP_SPEND[0]:g}-{LOOP_SPEND[1]:g}); spend_velocity multiple "
        f"{sv.multiple:g}, floor ${sv.floor_usd:g}/h, pause true; monitors every minute"
    )
    rows = [
        ("loop start", f"{utc(brk.loop_start):%a %d %b %H:%M} UTC", ""),
        (
            "minutes to pause",
            f"{brk.minutes:.0f}" if brk.paused_at else "never",
            f"{brk.loop_runs} runs, ${brk.loop_cost:.2f} from the loop's start; {RUNAWAY} now "
            f"{brk.status}"
            f" ({brk.reason_code or 'no reason'})",
        ),
    ]
    for agent_id, what in ((RUNAWAY, "before its loop"), (NOISY, "noisy"), (BUSY, "busy")):
        spent, ratio = brk.worst[agent_id]
        rows.append(
            (
                f"{agent_id} ({what})",
                f"${spent:.2f}",
                f"its worst hour; at most {ratio:.1f}x its baseline at the time",
            )
        )
    rows += [
        (
            "trips",
            str(len(brk.trips)),
            ", ".join(f"{a} ({'paused' if p else 'alert'})" for a, _, p in brk.trips),
        ),
        ("spend_velocity alerts", str(brk.alerts), ""),
        ("runs, monitor passes", f"{brk.runs}, {brk.passes}", ""),
        ("wall time", f"{brk.wall:.2f}s", ""),
    ]
    for label, figure, note in rows:
        print(f"  {label:<30} {figure:>20}  {note}".rstrip())

    checks: list[tuple[str, bool]] = []
    for m in months:
        name = m.policy.name
        checks.append(
            (
                f"{name}: calls <= issues worked + retries + planning ({m.calls} <= {m.budget})",
                m.calls <= m.budget,
            )
        )
        if m.policy.promote:
            checks.append(
                (f"{name}: 0 idle agent-hours with backlog ({m.idle_own})", m.idle_own == 0)
            )
        if m.policy.planner:
            for cid, p in m.periods.items():
                checks.append(
                    (
                        f"{name}: {cid} planning <= 1 per empty period (most {p.worst}, "
                        f"{p.outside} outside one)",
                        p.worst <= 1 and p.outside == 0,
                    )
                )
    checks += [
        (
            f"breaker: paused <= {MAX_PAUSE_MINUTES:g} min after the loop starts "
            f"({brk.minutes:.0f} min)",
            brk.minutes <= MAX_PAUSE_MINUTES,
        ),
        (
            "breaker: paused with its reason",
            brk.status == "paused" and brk.reason_code == "spend_velocity",
        ),
        (
            f"breaker: no other agent tripped ({NOISY} below the floor, {BUSY} within its rate)",
            all(a == RUNAWAY for a, _, _ in brk.trips),
        ),
        (f"wall < {MAX_WALL:g} s ({wall:.1f} s)", wall < MAX_WALL),
    ]
    for label, ok in checks:
        print(f"  [{verdict(ok)}] {label}")
    missed = [label for label, ok in checks if not ok]
    if missed:
        print(f"missed {len(missed)} target(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
