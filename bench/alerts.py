"""Alert latency and volume on a simulated fleet of 1,000 agents, in simulated time.

Builds the real core (core.fleet.Fleet: store, auth, service, scheduler, monitors, alerts,
outbox) on a hand-wound clock, with two companies of 500 simulated agents, and injects:
  1. 50 agent errors     (their runtime fails the run: event-driven, agent_error)
  2. 20 stuck runs       (their runtime hangs: found by the monitor pass, agent_stuck)
  3. a mass 401          (the key ring is replaced by one with another key, as when tokens are
                          signed with the wrong secret: every idle agent fails unknown_key)
Time advances one simulated second per step; the alert flush runs every second, the sweep every
10 s and the monitors every monitors.interval, as `fleetbot run` schedules them.

Prints, per fault kind, the time from fault to the first outbox row that tells a reader about
it (p50, p99), the messages produced per chat, and lost alerts (faults never in the outbox).
Targets: event-driven within group_wait + 1 s; monitor-found within monitors.interval +
group_wait; the mass 401 at most one message per company chat and per owner; 0 lost.
Exit status 1 if any target is missed.

    python bench/alerts.py [--agents 1000] [--errors 50] [--stuck 20]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from core.auth.keyring import KeyRing
from core.clock import ManualClock
from core.config import Config, parse_config
from core.events import AgentStatusChanged, Event
from core.fleet import Fleet
from core.models import AgentStatus

OWNERS = [1001, 1002]
CHATS = {"aliens": -1001, "matrix": -1002}


def build_config(root: Path, agents: int, errors: int, stuck: int) -> Config:
    companies = []
    per = agents // 2
    n = 0
    for cid, prefix in (("aliens", "ALI"), ("matrix", "MAT")):
        members = []
        for k in range(per):
            runtime: dict[str, Any] = {"kind": "simulated", "latency": 0}
            extra: dict[str, Any] = {}
            if n < errors:
                runtime["failure_rate"] = 1.0
            elif n < errors + stuck:
                runtime["hang_rate"] = 1.0
                extra["run_timeout"] = "2h"  # stuck by lack of progress, long before this
            members.append({"id": f"{cid}-{k}", "role": f"r{k}", "runtime": runtime, **extra})
            n += 1
        companies.append(
            {
                "id": cid,
                "name": cid.title(),
                "prefix": prefix,
                "chat": CHATS[cid],
                "agents": members,
            }
        )
    data = {
        "telegram": {"owners": OWNERS},
        "storage": {"path": str(root / "fleet.db")},
        "auth": {"keyring": str(root / "keyring.json"), "token_dir": str(root / "tokens")},
        "monitors": {"interval": "60s", "stuck_after": "30m"},
        "alerts": {"group_wait": "30s", "repeat_interval": "4h"},
        "companies": companies,
    }
    return parse_config(data, "bench")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def run(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="fleetbot-bench-alerts-"))
    clock = ManualClock()
    config = build_config(root, args.agents, args.errors, args.stuck)
    KeyRing.create(config.auth.keyring, clock.now())
    faults: list[tuple[str, str, float]] = []  # (fingerprint, kind, at)

    def on_event(event: Event) -> None:
        if isinstance(event, AgentStatusChanged) and event.new in (
            AgentStatus.ERROR,
            AgentStatus.UNAUTHENTICATED,
        ):
            kind = "agent_error" if event.new is AgentStatus.ERROR else "agent_unauthenticated"
            faults.append((f"{kind}:agent:{event.agent_id}", kind, clock.now()))

    started = time.perf_counter()
    async with Fleet(config, {}, clock, serve_api=False, periodic=False) as fleet:
        fleet.events.subscribe(on_event)
        interval = config.monitors.interval

        async def step(seconds: int = 1) -> None:
            for _ in range(seconds):
                clock.advance(1)
                now = int(clock.now())
                if now % 10 == 0:
                    await fleet.scheduler.tick()
                    await fleet.recovery.sweep()
                if now % int(interval) == 0:
                    await fleet.monitors.run()
                # No scheduler.drain(): the hung runs never finish, which is the point.
                await fleet.monitors.settle()
                await fleet.alerts.flush()

        await step(5)
        # 1 and 2: work for the agents whose runtime fails or hangs.
        fault_start = clock.now()
        for k in range(args.errors + args.stuck):
            company, idx = (
                ("aliens", k) if k < args.agents // 2 else ("matrix", k - args.agents // 2)
            )
            await fleet.service.file_issue(title=f"job {k}", assignee=f"{company}-{idx}", actor="b")
        for _ in range(3000):  # real time: the runtimes fail or hang on the event loop
            counts = dict(
                await fleet.db.fetchall("SELECT status, count(*) FROM runs GROUP BY status")
            )
            if counts.get("failed", 0) >= args.errors and counts.get("running", 0) == args.stuck:
                break
            await asyncio.sleep(0.01)
        else:
            raise SystemExit(f"the injected runs did not start as expected: {counts}")
        await fleet.monitors.settle()
        stuck_runs = [
            r for r in await fleet.service.recent_runs(limit=10_000) if r.status == "running"
        ]
        for r in stuck_runs:
            faults.append(
                (f"agent_stuck:agent:{r.agent_id}", "agent_stuck", r.last_progress_at + 1800)
            )
        await step(1900)
        # 3: the key ring is replaced by one with another key: every token is now unknown_key.
        mass_at = clock.now()
        config.auth.keyring.unlink()
        KeyRing.create(config.auth.keyring, clock.now())
        wall = time.perf_counter()
        await fleet.auth_watch.tick()
        await fleet.monitors.settle()
        mass_wall = time.perf_counter() - wall
        await step(int(interval) + 60)

        rows = await fleet.db.fetchall(
            "SELECT alert_id, kind, chat, created_at FROM outbox ORDER BY id"
        )
        members = await fleet.db.fetchall(
            "SELECT alert_id, fingerprint, first_at FROM alert_members"
        )
        alerts = {r[0]: r[1] for r in await fleet.db.fetchall("SELECT id, cause FROM alerts")}
    elapsed = time.perf_counter() - started

    first_row: dict[int, list[float]] = {}
    for alert_id, _kind, _chat, created in rows:
        first_row.setdefault(alert_id, []).append(created)
    by_fp: dict[str, list[tuple[int, float]]] = {}
    for alert_id, fp, first_at in members:
        by_fp.setdefault(fp, []).append((alert_id, first_at))
    latency: dict[str, list[float]] = {}
    lost: list[str] = []
    for fp, kind, at in faults:
        told = [
            t
            for alert_id, first_at in by_fp.get(fp, [])
            for t in first_row.get(alert_id, [])
            if t >= first_at - 1e-6 and t >= at - 1e-6
        ]
        if not told:
            lost.append(fp)
            continue
        latency.setdefault(kind, []).append(min(told) - at)

    gw, iv = config.alerts.group_wait, config.monitors.interval
    targets = {"agent_error": gw + 1, "agent_unauthenticated": gw + 1, "agent_stuck": iv + gw}
    ok = True
    print(
        f"fleet: {args.agents} agents, simulated {clock.now() - fault_start:.0f} s "
        f"in {elapsed:.1f} s wall"
    )
    print(f"{'fault':24} {'count':>6} {'p50 s':>7} {'p99 s':>7} {'target s':>9}")
    for kind, target in targets.items():
        values = latency.get(kind, [])
        p50, p99 = pct(values, 0.5), pct(values, 0.99)
        good = bool(values) and p99 <= target
        ok &= good
        print(
            f"{kind:24} {len(values):6d} {p50:7.1f} {p99:7.1f} {target:9.0f}"
            f"{'' if good else '  MISSED'}"
        )
    new = Counter((alerts[a], chat) for a, kind, chat, _ in rows if kind == "alert")
    edits = sum(1 for r in rows if r[1] == "alert_edit")
    print(f"messages: {sum(new.values())} new, {edits} edits, over {len(alerts)} alerts")
    mass = {chat: n for (cause, chat), n in new.items() if cause.startswith("agent_unauth")}
    mass_401 = sum(
        1 for fp, kind, at in faults if kind == "agent_unauthenticated" and at >= mass_at
    )
    print(
        f"mass 401 ({mass_401} agents): messages per chat {dict(sorted(mass.items()))}; "
        f"self-test and alert raises took {mass_wall:.1f} s wall (< group_wait)"
    )
    ok &= mass_wall < gw
    chats = {str(c) for c in CHATS.values()} | {str(o) for o in OWNERS}
    if set(mass) != chats or any(n > 1 for n in mass.values()):
        ok = False
        print("  MISSED: the mass 401 must be exactly one message per company chat and owner")
    print(f"lost alerts: {len(lost)}" + (f" e.g. {lost[:3]}" if lost else ""))
    ok &= not lost
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--errors", type=int, default=50)
    parser.add_argument("--stuck", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
