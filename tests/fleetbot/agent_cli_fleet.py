"""A real fleetbot (store, auth, service, the agent API on a loopback port) and the real
`fleetbot agent` command run against it as a subprocess, the way an agent's shell runs it.

Nothing is dispatched by itself (no periodic heartbeat, no wake on assign): a test opens runs
with `open_run`, which gives the run's own token, exactly what a runtime hands an agent.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store_helpers import storage

from core.auth.keyring import KeyRing
from core.config import parse_config
from core.engine.heartbeat import Heartbeat
from core.fleet import Fleet
from core.models import Run

COMPANY = "aliens"
# The console script (fleetbot.agent.launch), as an agent's PATH finds it.
FLEETBOT = Path(sys.executable).with_name("fleetbot")


def fleet_data(tmp_path: Path, **defaults: Any) -> dict[str, Any]:
    return {
        "storage": storage(tmp_path),
        "auth": {
            "keyring": str(tmp_path / "secrets" / "keyring.json"),
            "token_dir": str(tmp_path / "secrets" / "tokens"),
        },
        "api": {"listen": "127.0.0.1:0"},
        "defaults": {"wake_on_assign": False, "max_turns_per_run": 5, **defaults},
        "companies": [
            {
                "id": COMPANY,
                "name": "Aliens",
                "prefix": "ALI",
                "agents": [
                    {"id": "ripley", "role": "ceo"},
                    {"id": "bishop", "role": "cto", "reports_to": "ripley"},
                    {"id": "ash", "role": "cto", "reports_to": "ripley"},
                ],
            }
        ],
    }


@asynccontextmanager
async def live_fleet(tmp_path: Path, **defaults: Any) -> AsyncIterator[Fleet]:
    config = parse_config(fleet_data(tmp_path, **defaults), "agent cli test")
    KeyRing.create(config.auth.keyring, time.time())
    async with Fleet(config, {}, serve_api=True, periodic=False) as fleet:
        try:
            yield fleet
        finally:
            await fleet.scheduler.drain()


async def file_issue(fleet: Fleet, assignee: str, title: str, body: str = "") -> str:
    issue = await fleet.service.file_issue(
        title=title, assignee=assignee, actor="test", company=COMPANY, body=body
    )
    return issue.id


async def open_run(fleet: Fleet, agent_id: str) -> tuple[Run, str]:
    """A forced heartbeat: the agent's oldest open issue gets a live run; (run, run token)."""
    beat = await Heartbeat(fleet.service, fleet.auth, fleet.clock).beat(agent_id, forced=True)
    assert beat is not None and beat.run is not None, f"{agent_id} had no work: {beat}"
    agent = await fleet.service.agent(agent_id)
    return beat.run, fleet.auth.run_token(agent, beat.run.id, beat.run.deadline)


def run_env(fleet: Fleet, run: Run, token: str) -> dict[str, str]:
    """What the process runtime gives a child: the FLEETBOT_* of this run, and a PATH."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "FLEETBOT_API_URL": fleet.api_url,
        "FLEETBOT_RUN_ID": run.id,
        "FLEETBOT_ISSUE_ID": run.issue_id or "",
        "FLEETBOT_TOKEN": token,
    }


@dataclass
class Done:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def agent(
    *args: str, env: Mapping[str, str], stdin: str | None = None, python: list[str] | None = None
) -> Done:
    """`fleetbot agent ARGS` in a subprocess with exactly `env`; the API keeps serving meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        *(python or []),
        str(FLEETBOT),
        "agent",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 20)
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())
