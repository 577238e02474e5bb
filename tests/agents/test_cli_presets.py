"""The `claude-code` and `codex` presets with the real CLIs from npm, each on a fake model server.

Each test builds a whole fleet (store, auth, scheduler, the agent API on a real loopback port)
with one agent on a preset, files an issue (which wakes the agent at once) and watches the
store until the run ends. The CLI runs headless under the `process` runtime exactly as the
preset builds it; the fake model plays a good agent (tests/agents/agent_script.py): it reads
the issue id off the prompt the CLI sent, and its tool calls make the CLI run the real
`fleetbot agent show`, `comment` and `finish` against fleetbot's API. What is checked is what
the owner sees — the issue `done`, the summary the model chose, its comment on the issue, the
usage the CLI measured — and what the CLI really sent the model.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from store_helpers import storage

from core.auth.keyring import KeyRing
from core.config import parse_config
from core.fleet import Fleet
from core.models import Comment, Issue, IssueStatus, Run, RunStatus
from core.runtimes.presets import PROTOCOL
from tests.agents.agent_script import Call, Say, Shell, comment_for, summary_for
from tests.agents.conftest import E2E_TIMEOUT, AgentClis
from tests.agents.fake_anthropic import FakeAnthropic
from tests.agents.fake_openai import MODEL as CODEX_MODEL, FakeOpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(E2E_TIMEOUT)]

COMPANY = "lab"
RUN_WAIT = 90.0  # a run on the fake model takes seconds; this only bounds a broken one
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
_PREFIXES = (f"CLI{n}" for n in itertools.count(1))


@asynccontextmanager
async def open_fleet(
    tmp_path: Path, agent_id: str, runtime: dict[str, Any], env: Mapping[str, str]
) -> AsyncIterator[Fleet]:
    """A fleet with one company and one agent on `runtime`, its API on a free port."""
    data = {
        "storage": storage(tmp_path),
        "auth": {
            "keyring": str(tmp_path / "secrets" / "keyring.json"),
            "token_dir": str(tmp_path / "secrets" / "tokens"),
        },
        "api": {"listen": "127.0.0.1:0"},
        "defaults": {"run_timeout": "2m", "max_turns_per_run": 10, "wake_on_assign": True},
        "companies": [
            {
                "id": COMPANY,
                "name": "CLI Lab",
                "prefix": next(_PREFIXES),
                "agents": [{"id": agent_id, "role": "dev", "runtime": runtime}],
            }
        ],
    }
    config = parse_config(data, "agents e2e config")
    KeyRing.create(config.auth.keyring, time.time())
    # fleetbot's own environment: the process runtime passes PATH, HOME and LANG on, and
    # reads secret_env from it; the preset puts the venv's bin (with `fleetbot`) first.
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    async with Fleet(config, {**base, **env}, serve_api=True, periodic=False) as fleet:
        try:
            yield fleet
        finally:
            await fleet.scheduler.drain()


async def run_issue(fleet: Fleet, agent_id: str, title: str, body: str) -> tuple[Issue, Run]:
    """File an issue for `agent_id` (filing wakes it) and wait for its run to end."""
    filed = await fleet.service.file_issue(
        title=title, assignee=agent_id, actor="e2e", company=COMPANY, body=body
    )
    end = time.monotonic() + RUN_WAIT
    seen: Run | None = None
    while time.monotonic() < end:
        runs = [r for r in await fleet.service.recent_runs(agent_id, 50) if r.issue_id == filed.id]
        if runs:
            seen = runs[0]
            if seen.status is not RunStatus.RUNNING:
                # The agent's finish ends the run; the CLI's turn then winds down and its
                # usage report lands on the run when the process exits.
                await fleet.scheduler.drain()
                return await fleet.service.issue(filed.id), await fleet.service.runs.get(seen.id)
        await asyncio.sleep(0.05)
    state = f"its run is still {seen.status.value}" if seen else "no run was ever opened"
    raise AssertionError(f"{filed.id} did not end within {RUN_WAIT:.0f} s: {state}")


def check_the_loop(
    who: str, issue: Issue, run: Run, comments: list[Comment], calls: list[Call]
) -> None:
    """What both presets must show: the issue done by the model's own `fleetbot agent` calls."""
    moves = [c.move for c in calls]
    assert run.status is RunStatus.SUCCEEDED, (run, moves)
    assert issue.status is IssueStatus.DONE, (issue, moves)
    assert run.summary == summary_for(who, issue.id), run.summary
    ran = [m.command for m in moves if isinstance(m, Shell)]
    assert [c.split(" --")[0].split(" ")[:3] for c in ran] == [
        ["fleetbot", "agent", "show"],
        ["fleetbot", "agent", "comment"],
        ["fleetbot", "agent", "finish"],
    ], ran
    assert isinstance(moves[-1], Say), moves
    # The prompt the CLI sent carries the issue (its id, its title), and no token.
    first = calls[0]
    assert issue.id in first.prompt and issue.title in first.prompt, first.prompt
    assert "fleetbot agent" in first.prompt, first.prompt
    assert PROTOCOL in first.system, first.system[-2000:]
    for call in calls:
        assert not JWT.search(json.dumps(call.body)), "a token reached the model"
    # The tool results are the real `fleetbot agent` output: show printed the issue, finish
    # ended the run; and the comment (quoting show's first line) is on the issue.
    results = calls[-1].tool_results
    assert len(results) == 3, results
    assert issue.id in results[0] and issue.title in results[0], results[0]
    mine = [c for c in comments if c.author != "e2e"]
    assert [c.body for c in mine] == [comment_for(who, results[0])], comments
    assert issue.title in mine[0].body
    assert run.input_tokens > 0 and run.output_tokens > 0, run


async def test_claude_code_preset_takes_an_issue_to_done(
    agent_clis: AgentClis, tmp_path: Path
) -> None:
    (tmp_path / "work").mkdir()
    with FakeAnthropic("fake-claude") as model:
        runtime = {
            "kind": "process",
            "preset": "claude-code",
            "command": [str(agent_clis.claude)],
            "cwd": str(tmp_path / "work"),
            "env": {"ANTHROPIC_BASE_URL": model.origin, "HOME": str(tmp_path / "claude-home")},
            "secret_env": {"ANTHROPIC_API_KEY": {"env": "FAKE_ANTHROPIC_KEY"}},
        }
        env = {"FAKE_ANTHROPIC_KEY": "sk-ant-fake-key"}
        async with open_fleet(tmp_path, "claude", runtime, env) as fleet:
            issue, run = await run_issue(
                fleet, "claude", "Tidy the heron logs", "Rotate them weekly, keep four."
            )
            comments = await fleet.service.comments(issue.id)
        calls = model.calls()
        requests = model.requests
    check_the_loop("fake-claude", issue, run, comments, calls)
    # Every request was a model call (nothing else was asked of the endpoint), with the key.
    assert all(r.path.startswith("/v1/messages") for r in requests), [r.path for r in requests]
    assert {r.headers.get("x-api-key") for r in requests} == {"sk-ant-fake-key"}
    # Claude Code's own accounting, from its JSON result: turns, tokens, the price of the model
    # it asked for, and its session id on the run.
    assert run.turns == len(calls), (run.turns, len(calls))
    assert run.cost > 0, run
    assert run.model == calls[0].body["model"], run.model
    assert re.fullmatch(r"[0-9a-f-]{36}", run.external_id), run.external_id


async def test_codex_preset_takes_an_issue_to_done(agent_clis: AgentClis, tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    with FakeOpenAI("fake-codex") as model:
        provider = (
            f'model_providers.fake={{name="fake", base_url="{model.base_url}", '
            'env_key="FAKE_OPENAI_KEY", wire_api="responses"}'
        )
        runtime = {
            "kind": "process",
            "preset": "codex",
            "command": [str(agent_clis.codex)],
            "args": ["-c", provider, "-c", "model_provider=fake", "-m", CODEX_MODEL],
            "cwd": str(tmp_path / "work"),
            "env": {"CODEX_HOME": str(tmp_path / "codex-home"), "HOME": str(tmp_path)},
            "secret_env": {"FAKE_OPENAI_KEY": {"env": "FAKE_OPENAI_KEY"}},
        }
        (tmp_path / "codex-home").mkdir()
        env = {"FAKE_OPENAI_KEY": "sk-fake-openai-key"}
        async with open_fleet(tmp_path, "codex", runtime, env) as fleet:
            issue, run = await run_issue(
                fleet, "codex", "Count the otters", "Report the number in a comment."
            )
            comments = await fleet.service.comments(issue.id)
        calls = model.calls()
        requests = model.requests
    check_the_loop("fake-codex", issue, run, comments, calls)
    assert all(r.path == "/v1/responses" for r in requests), [r.path for r in requests]
    assert {r.headers.get("authorization") for r in requests} == {"Bearer sk-fake-openai-key"}
    # The sandbox Codex ran the commands in: workspace-write, with the network on.
    assert "workspace-write" in calls[0].system, calls[0].system[-1500:]
    # Codex's `turn.completed` usage: tokens (summed over the turn's model calls), no price.
    assert run.turns == 1 and run.cost == 0, run
    assert run.model == CODEX_MODEL, run.model
    assert run.external_id, run
