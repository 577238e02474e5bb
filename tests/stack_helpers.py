"""What the core tests build on: a two-company config, a key ring under tmp_path, a fake runtime
that counts every call the core makes to it, and a Stack (store, service, scheduler) on one file.

Imported by name (`from stack_helpers import …`); tests/conftest.py turns these into fixtures.
A conftest is not importable by name once a second test folder has one of its own."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from store_helpers import storage

from core.auth.agent_auth import AgentAuth, KeyRingFile
from core.auth.keyring import KeyRing
from core.clock import ManualClock
from core.config import Config, parse_config
from core.engine.scheduler import Scheduler
from core.events import Event
from core.models import Agent, AgentStatus
from core.runtimes.base import ACCEPTED, Dispatch, DispatchResult, Runtime
from core.service import FleetService
from core.store import agents as agent_store
from core.store.db import Database
from core.store.engines import database_for

API_URL = "http://127.0.0.1:9"  # never contacted: the fake runtimes only record it

# Two companies. `ceo` and `cto` exist in both (a bare role is ambiguous across companies);
# aliens has two `qa` agents (ambiguous inside one company); ali-cmo has explicit skills.
BASE_CONFIG: dict[str, Any] = {
    "defaults": {
        "heartbeat": "4h",
        "model": "cheap-model",
        "max_turns_per_run": 5,
        "run_timeout": "30m",
        "max_attempts": 3,
        "retry_backoff": "1m",
        "skills": {
            "*": ["summaries.post"],
            "ceo": ["issues.create", "summaries.post"],
            "cto": ["issues.create", "summaries.post", "shell"],
        },
    },
    "companies": [
        {
            "id": "aliens",
            "name": "Aliens Inc",
            "prefix": "ALI",
            "agents": [
                {"id": "ali-ceo", "role": "ceo"},
                {"id": "ali-cto", "role": "cto", "reports_to": "ali-ceo"},
                {"id": "ali-qa-1", "role": "qa", "reports_to": "ali-cto"},
                {"id": "ali-qa-2", "role": "qa", "reports_to": "ali-cto"},
                {"id": "ali-cmo", "role": "cmo", "skills": ["summaries.post", "ads"]},
            ],
        },
        {
            "id": "matrix",
            "name": "Matrix Co",
            "prefix": "MAT",
            "agents": [
                {"id": "mat-ceo", "role": "ceo"},
                {"id": "mat-cto", "role": "cto", "model": "strong-model"},
            ],
        },
    ],
}


def config_data(tmp_path: Path, **defaults: Any) -> dict[str, Any]:
    """The base config as a fresh dict, its paths under tmp_path, `defaults` overridden."""
    data = copy.deepcopy(BASE_CONFIG)
    data["storage"] = storage(tmp_path)
    data["auth"] = {
        "keyring": str(tmp_path / "secrets" / "keyring.json"),
        "token_dir": str(tmp_path / "secrets" / "tokens"),
    }
    data["defaults"].update(defaults)
    return data


def make_config(tmp_path: Path, **defaults: Any) -> Config:
    return parse_config(config_data(tmp_path, **defaults), "test config")


def make_auth(config: Config, clock: ManualClock) -> AgentAuth:
    """A real key ring file under tmp_path (created on first use) and the auth built on it."""
    if not config.auth.keyring.exists():
        KeyRing.create(config.auth.keyring, clock.now())
    return AgentAuth(KeyRingFile(config.auth.keyring), config.auth, clock)


Behaviour = Callable[[Dispatch], Awaitable[DispatchResult]]


class CountingRuntime(Runtime):
    """A fake agent: records each dispatch, then acts out `behaviour` (default: accepts the
    run and reports back later, like the http runtime)."""

    kind = "counting"

    def __init__(self, farm: RuntimeFarm) -> None:
        self.farm = farm
        self.calls: list[Dispatch] = []

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        self.calls.append(job)
        self.farm.calls.append(job)
        if self.farm.behaviour is None:
            return ACCEPTED
        return await self.farm.behaviour(job)


@dataclass
class RuntimeFarm:
    """The scheduler's runtime factory: one CountingRuntime per agent, one shared behaviour."""

    behaviour: Behaviour | None = None
    calls: list[Dispatch] = field(default_factory=list)
    by_agent: dict[str, CountingRuntime] = field(default_factory=dict)

    def __call__(self, agent: Agent) -> Runtime:
        return self.by_agent.setdefault(agent.id, CountingRuntime(self))

    def calls_for(self, *, agent_id: str | None = None, issue_id: str | None = None) -> int:
        return sum(
            1
            for job in self.calls
            if (agent_id is None or job.agent_id == agent_id)
            and (issue_id is None or job.issue["id"] == issue_id)
        )


def finishes(result: DispatchResult) -> Behaviour:
    async def behave(job: Dispatch) -> DispatchResult:
        return result

    return behave


def raises(exc: Exception) -> Behaviour:
    async def behave(job: Dispatch) -> DispatchResult:
        raise exc

    return behave


@dataclass
class Stack:
    """Database + FleetService + Scheduler on one file, without the API or the bot."""

    config: Config
    clock: ManualClock
    db: Database
    service: FleetService
    scheduler: Scheduler
    runtimes: RuntimeFarm
    events: list[Event]


@asynccontextmanager
async def open_stack(
    tmp_path: Path,
    clock: ManualClock,
    *,
    config: Config | None = None,
    behaviour: Behaviour | None = None,
    auth: AgentAuth | None = None,
    wake_on_assign: bool = True,
    start: bool = True,
) -> AsyncIterator[Stack]:
    config = config or make_config(tmp_path)
    farm = RuntimeFarm(behaviour)
    events: list[Event] = []
    async with database_for(config.storage) as db:
        token_check = auth.check_file if auth is not None else None
        service = FleetService(db, config, clock, token_check=token_check)
        service.events.subscribe(events.append)
        await service.sync_config()
        scheduler = Scheduler(
            service, farm, clock, auth=auth, api_url=API_URL, wake_on_assign=wake_on_assign
        )
        try:
            if start:
                await scheduler.start(periodic=False)
            yield Stack(config, clock, db, service, scheduler, farm, events)
        finally:
            await scheduler.aclose()


async def force_status(
    service: FleetService, agent_id: str, status: AgentStatus, code: str = "test"
) -> None:
    """Put an agent into `status` directly, as a failed run or the auth check would."""
    async with service.db.write() as conn:
        agent = await agent_store.get(conn, agent_id)
        assert agent is not None
        await agent_store.set_status(conn, agent, status, service.clock.now(), "set by test", code)


async def heartbeat_counts(service: FleetService, agent_id: str) -> dict[str, int]:
    found = await service.db.fetchall(
        "SELECT outcome, sum(count) FROM heartbeats WHERE agent_id = ? GROUP BY outcome",
        (agent_id,),
    )
    return {r[0]: r[1] for r in found}
