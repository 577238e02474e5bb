"""A simulated month of the design's 12-agent fleet: how many LLM calls do heartbeats cost?

The field notes' fleet woke a model on every heartbeat: 12 agents × 6 a day × 30 days = 2,160
calls a month, most of them to learn "nothing to do". Here the real core (store, key ring, token
files, service, heartbeat, scheduler) runs the same month on a ManualClock with 60 issues filed at
seeded random times, and every simulated run counts as one LLM call. An errored agent is reset by
the "operator" at its next heartbeat, as the field notes' owner did by hand.

    python bench/heartbeat_month.py [--seed N] [--issues N] [--failure-rate P]

Targets: calls ≤ issues done + retries (no call without work), baseline/calls ≥ 25x, wall < 10 s.
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

from _fleet import DESIGN_FLEET, SimulatedPool, design_config, open_core, operator_resets, report

from core.clock import ManualClock
from core.engine.scheduler import Scheduler
from core.reports.board import fleet_board

DAYS = 30
BASELINE = 12 * 6 * DAYS  # the field notes' 2,160: every heartbeat wakes a model
MIN_RATIO = 25.0
MAX_WALL = 10.0


@dataclass(slots=True)
class Month:
    calls: int = 0  # runs started: each one woke a model
    board_calls: int = 0  # the same, as /status shows it (core.reports.board)
    done: int = 0
    open_left: int = 0
    retries: int = 0  # runs beyond the first on the same issue
    failed_runs: int = 0
    resets: int = 0  # operator resets of errored agents
    heartbeats: int = 0  # every heartbeat the core ran (scheduled, wake-on-assign, reset)
    sweep_beats: int = 0  # heartbeats run by the periodic sweep alone
    saved: int = 0  # heartbeats that found no work and woke nothing
    board_saved: int = 0
    ticks: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0


async def simulate(root: Path, *, seed: int, issues: int, failure_rate: float) -> Month:
    started = time.perf_counter()
    month = Month()
    rng = random.Random(seed)
    clock = ManualClock()
    start = clock.now()
    end = start + DAYS * 86400
    config = design_config(root, failure_rate=failure_rate, seed=seed)
    async with open_core(config, clock) as (db, auth, service):
        pool = SimulatedPool(service)
        scheduler = Scheduler(service, pool, clock, auth=auth, api_url="http://127.0.0.1:9")
        filings = sorted(rng.uniform(start, end) for _ in range(issues))
        companies = list(DESIGN_FLEET.items())
        try:
            await scheduler.start(periodic=False)
            while True:
                due = await scheduler.heartbeat.next_due_at()
                upcoming = filings[0] if filings else math.inf
                when = min(math.inf if due is None else due, upcoming)
                if when > end:
                    break
                clock.set(max(when, clock.now()))
                now = clock.now()
                while filings and filings[0] <= now:
                    filings.pop(0)
                    cid, (_, _, roles) = rng.choice(companies)
                    await service.file_issue(
                        title=f"Task {issues - len(filings)}",
                        assignee=f"{rng.choice(roles)}@{cid}",
                        actor="owner",
                    )
                month.resets += await operator_resets(db, service, now)
                # Wake-ups from filings and resets finish before the sweep, so a woken agent
                # is not also swept in the same instant.
                await scheduler.drain()
                report = await scheduler.tick()
                month.ticks += 1
                month.sweep_beats += sum(report.beats.values())
                await scheduler.drain()
            boards = await fleet_board(db, clock.now())
        finally:
            await scheduler.aclose()
            await pool.aclose()
        month.calls = int(await db.scalar("SELECT count(*) FROM runs"))
        month.failed_runs = int(await db.scalar("SELECT count(*) FROM runs WHERE status='failed'"))
        month.retries = int(
            await db.scalar(
                "SELECT coalesce(sum(n - 1), 0) FROM "
                "(SELECT count(*) AS n FROM runs GROUP BY issue_id)"
            )
        )
        month.done = int(await db.scalar("SELECT count(*) FROM issues WHERE status = 'done'"))
        month.open_left = int(
            await db.scalar("SELECT count(*) FROM issues WHERE status NOT IN ('done','cancelled')")
        )
        for outcome, count in await db.fetchall(
            "SELECT outcome, sum(count) FROM heartbeats GROUP BY outcome ORDER BY outcome"
        ):
            month.outcomes[outcome] = int(count)
        month.heartbeats = sum(month.outcomes.values())
        month.saved = month.outcomes.get("no_work", 0)
        month.board_calls = sum(b.llm_calls for b in boards)
        month.board_saved = sum(b.saved_calls for b in boards)
    month.wall = time.perf_counter() - started
    return month


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--issues", type=int, default=60)
    parser.add_argument("--failure-rate", type=float, default=0.05)
    args = parser.parse_args(argv)
    # Injected run failures are expected here; the scheduler's warnings about them are noise.
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="fleetbot-bench-") as tmp:
        m = await simulate(
            Path(tmp), seed=args.seed, issues=args.issues, failure_rate=args.failure_rate
        )
    ratio = BASELINE / max(1, m.calls)
    sim_ratio = m.heartbeats / max(1, m.calls)
    print(
        f"heartbeat month: 12 agents (6 aliens + 6 matrix, a community manager in matrix's CMO "
        f"seat), 4h heartbeat, {DAYS} days, {args.issues} issues, failure rate "
        f"{args.failure_rate:g}, seed {args.seed}"
    )
    outcomes = ", ".join(f"{k}={v}" for k, v in m.outcomes.items())
    rows = [
        ("LLM calls made", f"{m.calls:6d}", f"runs started (board says {m.board_calls})"),
        ("baseline (design)", f"{BASELINE:6d}", f"12 agents x 6 heartbeats/day x {DAYS} days"),
        (
            "baseline (simulated)",
            f"{m.heartbeats:6d}",
            f"heartbeats run, {m.sweep_beats} by sweeps",
        ),
        ("ratio baseline/calls", f"{ratio:6.1f}x", f"simulated baseline: {sim_ratio:.1f}x"),
        ("issues done", f"{m.done:6d}", f"{m.open_left} still open at month end"),
        ("retries", f"{m.retries:6d}", f"{m.failed_runs} failed runs, {m.resets} operator resets"),
        ("heartbeats saved", f"{m.saved:6d}", f"no work, no call (board says {m.board_saved})"),
        ("heartbeat outcomes", "", outcomes),
        ("sweeps (ticks)", f"{m.ticks:6d}", ""),
        ("wall time", f"{m.wall:6.2f}s", ""),
    ]
    for label, figure, note in rows:
        print(f"  {label:<22} {figure:>7}  {note}".rstrip())
    checks = [
        (
            f"calls <= issues done + retries ({m.calls} <= {m.done + m.retries})",
            m.calls <= m.done + m.retries,
        ),
        (f"ratio >= {MIN_RATIO:g}x ({ratio:.1f}x)", ratio >= MIN_RATIO),
        (f"wall < {MAX_WALL:g} s ({m.wall:.2f} s)", m.wall < MAX_WALL),
        ("board agrees with the runs table", m.board_calls == m.calls and m.board_saved == m.saved),
    ]
    return report(checks)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
