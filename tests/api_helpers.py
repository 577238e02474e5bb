"""A real agent-API stack for tests: store, key ring, auth, service, guard and app, wired the way
core.fleet.Fleet wires them, with a hand-wound clock and an httpx client on the ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from store_helpers import storage

from core.api import Guard, create_app
from core.auth.agent_auth import AgentAuth, KeyRingFile
from core.auth.keyring import KeyRing
from core.auth.tokens import read_token_file
from core.clock import ManualClock
from core.config import Config, parse_config
from core.engine.heartbeat import Heartbeat
from core.metrics import Metrics
from core.models import Run
from core.service import FleetService
from core.store.db import Database
from core.store.engines import database_for

# Two companies. aliens has two CTOs (so the role `cto` is ambiguous there), a QA agent whose
# role lacks issues.create, and a mute agent with no skills at all.
FLEET_YAML: dict[str, Any] = {
    "defaults": {
        "max_turns_per_run": 5,
        "skills": {
            "*": ["summaries.post"],
            "ceo": ["issues.create", "summaries.post"],
            "cto": ["issues.create", "summaries.post"],
        },
    },
    "companies": [
        {
            "id": "aliens",
            "name": "Alex Kerber AB",
            "prefix": "ALI",
            "agents": [
                {"id": "ripley", "role": "ceo"},
                {"id": "bishop", "role": "cto", "reports_to": "ripley"},
                {"id": "ash", "role": "cto", "reports_to": "ripley"},
                {"id": "vasquez", "role": "qa", "reports_to": "ripley"},
                {"id": "mute", "role": "cmo", "skills": []},
            ],
        },
        {
            "id": "matrix",
            "name": "StarDust Meet",
            "prefix": "MAT",
            "agents": [
                {"id": "morpheus", "role": "ceo"},
                {"id": "trinity", "role": "cto", "reports_to": "morpheus"},
            ],
        },
    ],
}


def fleet_config(tmp_path: Path, **api: Any) -> Config:
    data: dict[str, Any] = {
        **FLEET_YAML,
        "storage": storage(tmp_path),
        "auth": {
            "keyring": str(tmp_path / "secrets" / "keyring.json"),
            "token_dir": str(tmp_path / "secrets" / "tokens"),
        },
    }
    if api:
        data["api"] = api
    return parse_config(data, "test")


@dataclass
class ApiStack:
    config: Config
    clock: ManualClock
    db: Database
    auth: AgentAuth
    service: FleetService
    metrics: Metrics
    app: FastAPI
    client: httpx.AsyncClient

    def token(self, agent_id: str) -> str:
        return read_token_file(self.config.auth.token_dir, agent_id)

    def headers(self, agent_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(agent_id)}"}

    async def open_run(self, agent_id: str) -> Run:
        """A forced heartbeat: the agent's oldest open issue gets a live run."""
        beat = await Heartbeat(self.service, self.auth, self.clock).beat(agent_id, forced=True)
        assert beat is not None and beat.run is not None, f"{agent_id} had no work: {beat}"
        return beat.run

    async def run_token_headers(self, agent_id: str, run: Run) -> dict[str, str]:
        agent = await self.service.agent(agent_id)
        token = self.auth.run_token(agent, run.id, run.deadline)
        return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def api_stack(tmp_path: Path, alg: str = "HS256") -> AsyncIterator[ApiStack]:
    config = fleet_config(tmp_path)
    clock = ManualClock()
    KeyRing.create(config.auth.keyring, clock.now(), alg=alg)
    async with database_for(config.storage) as db:
        auth = AgentAuth(KeyRingFile(config.auth.keyring), config.auth, clock)
        service = FleetService(db, config, clock, token_check=auth.check_file)
        await service.sync_config()
        for agent in await service.agents():
            auth.issue(agent, fsync=False)
        metrics = Metrics()
        app = create_app(service, Guard(service, auth, metrics), metrics)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
            yield ApiStack(config, clock, db, auth, service, metrics, app, client)
