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
wall < 120 s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _fleet import (
    DESIGN_FLEET,
    WEEKEND,
    SimulatedPool,
    design_config,
    open_core,
    operator_resets,
    poisson,
    report,
    time_of_day,
)
from _runaway import BASELINE_DAYS, BUSY, LOOP_SPEND, NOISY, RUNAWAY, simulate_breaker

from core.alerting.book import AlertBook
from core.alerting.outbox import Outbox
from core.alerting.watchdog import Monitors
from core.clock import ManualClock, utc
from core.config import Config
from core.config.queues import PlannerConfig, SpendVelocity
from core.engine.recovery import Recovery
from core.engine.scheduler import Scheduler
from core.events import EventBus
from core.models import PLANNER, Agent, IssueStatus, Priority
from core.queues.feeder import INTERVAL as FEED_INTERVAL, Feeder
from core.queues.planner import Planner
from core.reports.costs import CostBook
from core.runtimes.base import Dispatch, DispatchResult, Runtime
from core.service import FleetService
from core.store import issues as issue_store
from core.store.db import Database, fetch_all

DAYS = 30
HOUR = 3600.0
DAY = 86400.0
WEEKS = ("normal", "bursty", "quiet", "bursty", "quiet")  # the month's weeks, in order
RATE = {"normal": 5.0, "bursty": 5.0, "quiet": 0.4}  # issues per company per weekday
BACKLOG_SHARE = 0.25  # of everyday arrivals: "for later"
INITIAL_BACKLOG = 18  # per company, filed before the first heartbeat
BURSTS = 2  # per company per bursty week
TRIAGE = 3  # backlog items the owner promotes by hand per idle agent (alerts only)
GOALS = ["Ship the v2 onboarding", "Grow weekly active teams 10 %", "Keep churn under 3 %"]
PRIORITIES = ((Priority.CRITICAL, 0.03), (Priority.HIGH, 0.15), (Priority.LOW, 0.25))
MAX_PAUSE_MINUTES = 60.0
MAX_WALL = 120.0  # a bench to run by hand: 30-40 s alone on the dev box, slower under load


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
            for _ in range(poisson(rng, mean)):
                out.append(
                    Filing(
                        midnight + time_of_day(rng),
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
    queue = list(filings)
    idle = IdleWatch(start)
    events = EventBus()
    async with open_core(config, clock, events) as (db, auth, service):
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
                month.resets += await operator_resets(db, service, now)
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
    return report(checks)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
