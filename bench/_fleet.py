"""Shared parts of the benchmarks: the design's 12-agent fleet, simulated runtimes, timing.

The fleet is the one of the field notes: Aliens with CEO, CTO, CPO, CMO, COO and QA; Matrix with
the same structure but a community manager in the CMO's seat, so the total stays at the twelve
agents the notes count (6 + 6).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from core.auth.agent_auth import AgentAuth, KeyRingFile
from core.auth.keyring import KeyRing
from core.clock import Clock
from core.config import Config, SimulatedRuntime, parse_config
from core.events import EventBus
from core.models import Agent
from core.runtimes.base import RunReporter, Runtime
from core.runtimes.simulated import SimulatedAgentRuntime
from core.service import FleetService
from core.store.db import Database
from core.store.engines import database_for

DESIGN_FLEET: dict[str, tuple[str, str, list[str]]] = {
    # company id: (name, issue prefix, roles)
    "aliens": ("Alex Kerber AB", "ALI", ["ceo", "cto", "cpo", "cmo", "coo", "qa"]),
    "matrix": ("StarDust Meet", "MAT", ["ceo", "cto", "cpo", "cm", "coo", "qa"]),
}


def design_config(
    root: Path,
    *,
    failure_rate: float,
    seed: int,
    heartbeat: str = "4h",
    token_ttl: str = "90d",
) -> Config:
    """The 12-agent fleet on simulated runtimes, storing everything under `root`."""
    companies: list[dict[str, Any]] = []
    n = 0
    for cid, (name, prefix, roles) in DESIGN_FLEET.items():
        agents = []
        for role in roles:
            n += 1
            agents.append(
                {
                    "id": f"{cid[:3]}-{role}",
                    "role": role,
                    "reports_to": None if role == "ceo" else f"{cid[:3]}-ceo",
                    "runtime": {
                        "kind": "simulated",
                        "latency": 0,
                        "failure_rate": failure_rate,
                        "seed": seed * 1000 + n,
                    },
                }
            )
        companies.append({"id": cid, "name": name, "prefix": prefix, "agents": agents})
    data = {
        "storage": {"path": str(root / "fleet.db")},
        "auth": {
            "keyring": str(root / "keyring.json"),
            "token_dir": str(root / "tokens"),
            # Longer than the simulated month, so tokens issued on day 0 still verify on day 30.
            "token_ttl": token_ttl,
        },
        "defaults": {"heartbeat": heartbeat},
        "companies": companies,
    }
    return parse_config(data, "(bench design fleet)")


def generated_config(root: Path, companies: int, agents_per_company: int) -> Config:
    """A large synthetic fleet: `companies` × `agents_per_company` simulated agents."""
    roles = ["ceo", "cto", "cpo", "cmo", "coo", "qa", "dev", "ops", "sales", "support"]
    data: dict[str, Any] = {
        "storage": {"path": str(root / "scale.db")},
        "auth": {"keyring": str(root / "keyring.json"), "token_dir": str(root / "tokens")},
        "companies": [
            {
                "id": f"co{c:03d}",
                "name": f"Company {c}",
                "prefix": f"C{c:03d}",
                "agents": [
                    {
                        "id": f"co{c:03d}-a{a:03d}",
                        "role": roles[a % len(roles)] if a < len(roles) else f"r{a:03d}",
                        "runtime": {"kind": "simulated", "seed": c * 1000 + a},
                    }
                    for a in range(agents_per_company)
                ],
            }
            for c in range(companies)
        ],
    }
    return parse_config(data, "(bench generated fleet)")


async def no_sleep(_seconds: float) -> None:
    """Latency that costs no wall time: the simulated agent 'thinks' instantly."""


class SimulatedPool:
    """A runtime factory for the Scheduler: one seeded, sleepless simulated agent per agent."""

    def __init__(self, reporter: RunReporter) -> None:
        self.reporter = reporter
        self._by_agent: dict[str, Runtime] = {}

    def __call__(self, agent: Agent) -> Runtime:
        runtime = self._by_agent.get(agent.id)
        if runtime is None:
            cfg = SimulatedRuntime.model_validate(agent.runtime)
            runtime = SimulatedAgentRuntime(
                cfg, self.reporter, rng=random.Random(cfg.seed), sleep=no_sleep
            )
            self._by_agent[agent.id] = runtime
        return runtime

    async def aclose(self) -> None:
        for runtime in self._by_agent.values():
            await runtime.aclose()
        self._by_agent.clear()


async def median_ms(func: Callable[[], Awaitable[object]], repeat: int) -> float:
    """Median wall time of `func()` in milliseconds over `repeat` runs (after one warm-up)."""
    await func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await func()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# -- arrivals: when simulated work is filed ---------------------------------------------------

WEEKEND = 0.2  # share of a weekday's arrivals on Saturdays and Sundays


def poisson(rng: random.Random, mean: float) -> int:
    n, t = 0, rng.expovariate(1.0)
    while t < mean:
        n += 1
        t += rng.expovariate(1.0)
    return n


def time_of_day(rng: random.Random) -> float:
    """Seconds after midnight: mostly working hours (08:00-18:00 UTC), sometimes any time."""
    if rng.random() < 0.85:
        return rng.uniform(8 * 3600.0, 18 * 3600.0)
    return rng.uniform(0, 86400.0)


@asynccontextmanager
async def open_core(
    config: Config, clock: Clock, events: EventBus | None = None
) -> AsyncIterator[tuple[Database, AgentAuth, FleetService]]:
    """The real core of a simulation: a new key ring, the store, the service with the config's
    fleet synced, and every agent's token file written."""
    KeyRing.create(config.auth.keyring, clock.now())
    async with database_for(config.storage) as db:
        auth = AgentAuth(KeyRingFile(config.auth.keyring), config.auth, clock)
        service = FleetService(db, config, clock, events or EventBus(), token_check=auth.check_file)
        await service.sync_config()
        for agent in await service.agents():
            auth.issue(agent, fsync=False)  # heartbeats verify these files every time
        yield db, auth, service


def report(checks: Sequence[tuple[str, bool]]) -> int:
    """Print each target as [ok] or [MISSED]; the exit code: 1 if any was missed."""
    for label, ok in checks:
        print(f"  [{verdict(ok)}] {label}")
    missed = [label for label, ok in checks if not ok]
    if missed:
        print(f"missed {len(missed)} target(s)", file=sys.stderr)
        return 1
    return 0


async def operator_resets(db: Database, service: FleetService, now: float) -> int:
    """Errored agents are reset at their next heartbeat, as the field notes' owner did."""
    errored = await db.fetchall(
        "SELECT id FROM agents WHERE status = 'error' AND deleted_at IS NULL "
        "AND next_heartbeat_at <= ?",
        (now,),
    )
    for row in errored:
        await service.reset(row[0], "owner")
    return len(errored)
