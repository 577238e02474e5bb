"""The store at scale: 10,000 agents and 100,000 issues in one SQLite file.

Builds 100 companies × 100 agents through `FleetService.sync_config` (the path `fleetbot run`
takes), bulk-inserts 100,000 issues with a realistic status mix, 100,000 runs (half of them this
month) and a month and a half of heartbeat counters for every agent, then times the three reads
that must stay fast as a fleet grows:

  sweep    Heartbeat.due(now) with 1/24 of the agents due (one 4h heartbeat's worth per 10 min)
  inbox    FleetService.inbox(agent_id), a different agent each time
  summary  core.reports.board.fleet_board(db, now), the data behind /status

    python bench/scale.py [--explain] [--repeat N]

`--explain` prints SQLite's query plan for every statement each read runs (captured with a trace
callback, so the plans are of the exact SQL the core sends). Targets (medians): sweep ≤ 50 ms,
inbox ≤ 2 ms, summary ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _fleet import generated_config, median_ms, verdict

from core.clock import ManualClock, day_key, month_start
from core.engine.heartbeat import Heartbeat
from core.reports.board import fleet_board
from core.service import FleetService
from core.store.db import Database
from core.store.sqlite import SqliteDatabase

COMPANIES = 100
AGENTS_PER_COMPANY = 100
ISSUES = 100_000
RUNS_THIS_MONTH = 50_000
RUNS_EARLIER = 50_000
HEARTBEAT = 4 * 3600.0
NOW = datetime(2026, 3, 21, 12, 0, tzinfo=UTC).timestamp()  # day 21 of the month
TARGETS_MS = {"sweep": 50.0, "inbox": 2.0, "summary": 100.0}
ISSUE_MIX = [  # status, share
    ("done", 0.80),
    ("cancelled", 0.04),
    ("todo", 0.07),
    ("in_progress", 0.03),
    ("in_review", 0.03),
    ("blocked", 0.03),
]
AGENT_MIX = [("idle", 0.90), ("running", 0.05), ("paused", 0.02), ("error", 0.02)]


def _pick(rng: random.Random, mix: list[tuple[str, float]]) -> str:
    return rng.choices([s for s, _ in mix], weights=[w for _, w in mix])[0]


async def build(db: Database, root: Path, rng: random.Random) -> dict[str, float]:
    """Fill the store; returns seconds per step."""
    took: dict[str, float] = {}
    clock = ManualClock(NOW - 40 * 86400)

    t = time.perf_counter()
    config = generated_config(root, COMPANIES, AGENTS_PER_COMPANY)
    took["config (pydantic, 10k agents)"] = time.perf_counter() - t
    t = time.perf_counter()
    await FleetService(db, config, clock).sync_config()
    took["sync_config (10k agents)"] = time.perf_counter() - t

    t = time.perf_counter()
    by_company = {c.id: [a.id for a in c.agents] for c in config.companies}
    prefixes = {c.id: c.prefix for c in config.companies}
    agent_ids = [a for ids in by_company.values() for a in ids]
    # Due share: next heartbeats spread evenly over one interval, 1/24 of it already passed.
    agent_rows = [
        (NOW + rng.uniform(-HEARTBEAT / 24, HEARTBEAT * 23 / 24), _pick(rng, AGENT_MIX), a)
        for a in agent_ids
    ]
    issues: list[tuple[Any, ...]] = []
    numbers: Counter[str] = Counter()
    created = sorted(rng.uniform(NOW - 180 * 86400, NOW) for _ in range(ISSUES))
    for at in created:
        cid = rng.choice(list(by_company))
        numbers[cid] += 1
        status = _pick(rng, ISSUE_MIX)
        assignee = None if rng.random() < 0.03 else rng.choice(by_company[cid])
        issues.append(
            (
                f"{prefixes[cid]}-{numbers[cid]}",
                cid,
                numbers[cid],
                f"Issue {numbers[cid]} of {cid}",
                status,
                assignee,
                "owner",
                rng.randint(1, 2) if status != "todo" else 0,
                at,
                min(NOW, at + rng.uniform(0, 5 * 86400)),
            )
        )
    worked = [(i[0], i[1], i[5]) for i in issues if i[5] is not None and i[4] != "todo"]
    since = month_start(NOW)
    runs: list[tuple[Any, ...]] = []
    for n in range(RUNS_THIS_MONTH + RUNS_EARLIER):
        lo, hi = (since, NOW) if n < RUNS_THIS_MONTH else (since - 60 * 86400, since)
        started = rng.uniform(lo, hi)
        issue_id, company_id, agent_id = rng.choice(worked)
        status = "succeeded" if rng.random() < 0.92 else "failed"
        turns = rng.randint(1, 12)
        runs.append(
            (
                f"{rng.getrandbits(128):032x}",
                agent_id,
                company_id,
                issue_id,
                status,
                started,
                started + 1800,
                started + rng.uniform(30, 900),
                turns,
                turns * rng.randint(800, 1600),
                turns * rng.randint(100, 400),
                turns * 0.002,
                "glm-5.2-cloud",
                started,
            )
        )
    runs.sort(key=lambda r: r[5])
    dispatched = Counter((r[1], day_key(r[5])) for r in runs)
    days = [day_key(since - 31 * 86400 + d * 86400) for d in range(31 + 21)]
    beats: list[tuple[str, str, str, int]] = [
        (a, day, "no_work", 6 - min(5, dispatched[(a, day)])) for a in agent_ids for day in days
    ]
    beats.extend((a, day, "dispatched", n) for (a, day), n in dispatched.items())
    took["generate rows (python)"] = time.perf_counter() - t

    t = time.perf_counter()
    async with db.write() as conn:
        await conn.executemany(
            "UPDATE agents SET next_heartbeat_at = ?, status = ? WHERE id = ?", agent_rows
        )
        await conn.executemany(
            "INSERT INTO issues (id, company_id, number, title, status, assignee_id, created_by, "
            "attempts, max_attempts, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 3, ?, ?)",
            issues,
        )
        await conn.executemany(
            "UPDATE companies SET next_issue_number = ? WHERE id = ?",
            [(n + 1, cid) for cid, n in numbers.items()],
        )
        await conn.executemany(
            # With its company, as RunBook.open writes it (the schema's trigger fills it in
            # only for inserts that leave it out).
            "INSERT INTO runs (id, agent_id, company_id, issue_id, status, started_at, deadline, "
            "ended_at, turns, max_turns, input_tokens, output_tokens, cost, model, "
            "last_progress_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 50, ?, ?, ?, ?, ?)",
            runs,
        )
        await conn.executemany(
            "INSERT INTO heartbeats (agent_id, day, outcome, count) VALUES (?, ?, ?, ?)", beats
        )
    took[f"bulk insert ({len(issues):,} issues, {len(runs):,} runs, {len(beats):,} counters)"] = (
        time.perf_counter() - t
    )
    return took


async def explain(db: Database, name: str, func: Callable[[], Awaitable[object]]) -> list[str]:
    """The plan of every statement `func` sends over the reader connection, as lines."""
    seen: list[str] = []
    await db.reader.set_trace_callback(seen.append)
    try:
        await func()
    finally:
        # sqlite3 takes None to remove the callback; aiosqlite's annotation omits it.
        await db.reader.set_trace_callback(None)  # type: ignore[arg-type]
    lines = [f"  plan: {name}"]
    for sql in seen:
        lines.append(f"    {' '.join(sql.split())[:150]}")
        lines.extend(f"      {row[3]}" for row in await db.fetchall(f"EXPLAIN QUERY PLAN {sql}"))
    return lines


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per read (min 20)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    repeat = max(20, args.repeat)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fleetbot-scale-") as tmp:
        root = Path(tmp)
        async with SqliteDatabase(root / "scale.db") as db:
            took = await build(db, root, rng)
            clock = ManualClock(NOW)
            config = generated_config(root, 1, 1)  # the reads below do not consult it
            service = FleetService(db, config, clock)
            heartbeat = Heartbeat(service, None, clock)
            agent_ids = [r[0] for r in await db.fetchall("SELECT id FROM agents")]
            picks: Iterator[str] = iter([rng.choice(agent_ids) for _ in range(repeat + 1)])
            due_now = len(await heartbeat.due(NOW))
            inbox_sizes = [len(await service.inbox(a)) for a in agent_ids[:500]]
            reads: dict[str, Callable[[], Awaitable[object]]] = {
                "sweep": lambda: heartbeat.due(NOW),
                "inbox": lambda: service.inbox(next(picks)),
                "summary": lambda: fleet_board(db, NOW),
            }
            medians = {name: await median_ms(func, repeat) for name, func in reads.items()}
            plans: list[str] = []
            if args.explain:
                picks = iter(agent_ids[:1])
                for name, func in reads.items():
                    plans.extend(await explain(db, name, func))
            size = (root / "scale.db").stat().st_size
    wall = time.perf_counter() - started
    print(
        f"scale: {COMPANIES * AGENTS_PER_COMPANY:,} agents ({COMPANIES} companies), "
        f"{ISSUES:,} issues, {RUNS_THIS_MONTH + RUNS_EARLIER:,} runs "
        f"({RUNS_THIS_MONTH:,} this month); SQLite file {size / 2**20:.0f} MiB"
    )
    for step, seconds in took.items():
        print(f"  build: {step:<62} {seconds:6.2f} s")
    print(
        f"  {due_now} agents due per sweep; inbox sizes (first 500 agents): "
        f"max {max(inbox_sizes)}, mean {sum(inbox_sizes) / len(inbox_sizes):.1f}"
    )
    ok = True
    for name, ms in medians.items():
        target = TARGETS_MS[name]
        hit = ms <= target
        ok &= hit
        print(
            f"  [{verdict(hit)}] {name:<8} median {ms:8.2f} ms  target <= {target:g} ms  "
            f"({target / ms:.0f}x headroom, {repeat} runs)"
        )
    print(f"  wall time {wall:.1f} s")
    print("\n".join(plans) if plans else "  (--explain prints the query plans)")
    if not ok:
        print("missed a target", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
