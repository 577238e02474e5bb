"""A real fleetbot whose agents are examples/openai_agent.py under the `process` runtime.

The whole stack of `fleetbot run --no-bot` (store, auth, scheduler, the agent API on a loopback
port): filing an issue wakes its agent at once, the process runtime starts the example with the
run's FLEETBOT_* variables, and the example talks to a fake chat-completions endpoint and to
fleetbot through the real `fleetbot agent` command (found on the PATH given to the child).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from store_helpers import storage

from core.auth.keyring import KeyRing
from core.config import parse_config
from core.fleet import Fleet
from core.models import Run, RunStatus

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "openai_agent.py"
COMPANY = "lab"
CHEAP, STRONG = "cheap-1", "strong-1"
PRICE = (1.0, 4.0)  # USD per million input, output tokens (OPENAI_PRICE)
KEY = "sk-fake-key"
RUNTIME = {"kind": "process", "command": [sys.executable, str(EXAMPLE)]}


def example_runtime(model_url: str, key_file: Path | None = None) -> dict[str, Any]:
    """The runtime of an example agent; its API key from `key_file`, else from fleetbot's env
    (`secret_env`, as the example config does it)."""
    env = {
        "OPENAI_BASE_URL": model_url,
        "OPENAI_MODEL": CHEAP,
        "OPENAI_STRONG_MODEL": STRONG,
        "OPENAI_PRICE": f"{PRICE[0]},{PRICE[1]}",
    }
    if key_file is not None:
        return {**RUNTIME, "env": {**env, "OPENAI_API_KEY_FILE": str(key_file)}}
    return {**RUNTIME, "env": env, "secret_env": {"OPENAI_API_KEY": {"env": "TEST_OPENAI_KEY"}}}


@asynccontextmanager
async def example_fleet(
    tmp_path: Path,
    model_url: str,
    agents: int = 1,
    path: str = "",
    key_in_file: bool = False,
    **defaults: Any,
) -> AsyncIterator[Fleet]:
    """A fleet of `agents` example agents (`worker-0` …) on the model at `model_url`; `path`
    goes first on the agents' PATH."""
    key_file = None
    if key_in_file:
        key_file = tmp_path / "openai.key"
        key_file.write_text(f"{KEY}\n")
    data = {
        "storage": storage(tmp_path),
        "auth": {
            "keyring": str(tmp_path / "secrets" / "keyring.json"),
            "token_dir": str(tmp_path / "secrets" / "tokens"),
        },
        "api": {"listen": "127.0.0.1:0"},
        "defaults": {
            "run_timeout": "2m",
            "max_turns_per_run": 8,
            "wake_on_assign": True,
            "skills": {"*": ["issues.create", "summaries.post"]},
            **defaults,
        },
        "companies": [
            {
                "id": COMPANY,
                "name": "Lab",
                "prefix": "LAB",
                "agents": [
                    {
                        "id": f"worker-{n}",
                        "role": "cto" if n == 0 else f"role-{n}",
                        "runtime": example_runtime(model_url, key_file),
                    }
                    for n in range(agents)
                ],
            }
        ],
    }
    config = parse_config(data, "example agent config")
    KeyRing.create(config.auth.keyring, time.time())
    # The child finds `fleetbot` where this interpreter's scripts are, as in an activated venv.
    dirs = [path, str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
    env: Mapping[str, str] = {
        "PATH": os.pathsep.join(d for d in dirs if d),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "TEST_OPENAI_KEY": KEY,
    }
    async with Fleet(config, dict(env), serve_api=True, periodic=False) as fleet:
        try:
            yield fleet
        finally:
            await fleet.scheduler.drain()


async def file_issue(
    fleet: Fleet, assignee: str, title: str, body: str = "", model: str | None = None
) -> str:
    """File an issue (which wakes its agent); its id."""
    issue = await fleet.service.file_issue(
        title=title, assignee=assignee, actor="test", company=COMPANY, body=body, model=model
    )
    return issue.id


async def ended_run(fleet: Fleet, agent_id: str, issue_id: str, within: float = 60.0) -> Run:
    """The issue's latest run once it has ended."""
    end = time.monotonic() + within
    seen: Run | None = None
    while time.monotonic() < end:
        runs = [r for r in await fleet.service.recent_runs(agent_id, 50) if r.issue_id == issue_id]
        if runs:
            seen = runs[0]
            if seen.status is not RunStatus.RUNNING:
                return seen
        await asyncio.sleep(0.05)
    state = f"its run is still {seen.status.value}" if seen else "no run was ever opened"
    raise AssertionError(f"{issue_id} did not end within {within:.0f} s: {state}")
