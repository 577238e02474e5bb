"""Restarts: runs left live by a previous process are interrupted, and the work goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stack_helpers import config_data, make_auth, open_stack

from core.clock import ManualClock
from core.config import Config, parse_config
from core.fleet import Fleet
from core.models import AgentStatus, IssueStatus, RunStatus
from core.store.engines import database_for


async def test_restart_interrupts_live_runs(tmp_path: Path, clock: ManualClock) -> None:
    async with open_stack(tmp_path, clock) as s:
        issue = await s.service.file_issue(title="long job", assignee="ali-cto", actor="o")
        await s.scheduler.drain()
        (run,) = await s.service.recent_runs("ali-cto")
        assert run.status is RunStatus.RUNNING
        assert (await s.service.agent("ali-cto")).status is AgentStatus.RUNNING
    # The process is gone; the file still says the run is live.
    clock.advance(120)
    async with open_stack(tmp_path, clock, start=False) as s:
        assert (await s.service.runs.get(run.id)).status is RunStatus.RUNNING
        await s.scheduler.start(periodic=False)
        after = await s.service.runs.get(run.id)
        assert (after.status, after.reason_code, after.ended_at) == (
            RunStatus.INTERRUPTED,
            "interrupted",
            clock.now(),
        )
        agent = await s.service.agent("ali-cto")
        assert (agent.status, agent.reason_code) == (AgentStatus.IDLE, "")
        held = await s.service.issue(issue.id)
        assert (held.lease_run_id, held.lease_until) == (None, None)
        assert held.status is IssueStatus.IN_PROGRESS
        # Its agent picks it up again on a later heartbeat.
        clock.advance(4 * 3600)
        await s.scheduler.tick()
        await s.scheduler.drain()
        assert s.runtimes.calls_for(issue_id=issue.id) == 1
        assert (await s.service.issue(issue.id)).attempts == 2


def _fleet_config(tmp_path: Path, **runtime: Any) -> Config:
    data = config_data(tmp_path)
    data["api"] = {"listen": "127.0.0.1:0"}
    for company in data["companies"]:
        for agent in company["agents"]:
            agent["runtime"] = {"kind": "simulated", "latency": 0, "turns": 2, **runtime}
    return parse_config(data, "fleet test config")


async def test_fleet_runs_a_simulated_agent_end_to_end(tmp_path: Path, clock: ManualClock) -> None:
    config = _fleet_config(tmp_path)
    make_auth(config, clock)  # the key ring under tmp_path, as `fleetbot init` would make it
    async with Fleet(config, {}, clock, serve_api=False, periodic=False) as fleet:
        assert fleet.server is None
        issue = await fleet.service.file_issue(title="write docs", assignee="cto@ali", actor="o")
        await fleet.scheduler.drain()
        done = await fleet.service.issue(issue.id)
        assert (done.status, done.lease_run_id) == (IssueStatus.DONE, None)
        (run,) = await fleet.service.recent_runs("ali-cto")
        assert (run.status, run.turns, run.model) == (RunStatus.SUCCEEDED, 2, "cheap-model")
        assert "write docs" in run.summary
        assert (await fleet.service.agent("ali-cto")).status is AgentStatus.IDLE


async def test_fleet_startup_issues_tokens_and_a_broken_one_wakes_nobody(
    tmp_path: Path, clock: ManualClock
) -> None:
    config = _fleet_config(tmp_path)
    auth = make_auth(config, clock)
    async with Fleet(config, {}, clock, serve_api=False, periodic=False) as fleet:
        # A new agent gets its token file at startup; nobody has to run a command first.
        for agent in await fleet.service.agents():
            assert auth.check_file(agent) is None, agent.id
        auth.token_file("ali-cto").write_text("not-a-jwt\n")
        await fleet.service.file_issue(title="t", assignee="ali-cto", actor="o")
        await fleet.scheduler.drain()
        agent = await fleet.service.agent("ali-cto")
        assert (agent.status, agent.reason_code) == (AgentStatus.UNAUTHENTICATED, "malformed")
        assert await fleet.service.recent_runs() == []


async def test_fleet_restart_interrupts_and_finishes_the_work(
    tmp_path: Path, clock: ManualClock
) -> None:
    hanging = _fleet_config(tmp_path, hang_rate=1.0)
    make_auth(hanging, clock)
    async with Fleet(hanging, {}, clock, serve_api=False, periodic=False) as fleet:
        issue = await fleet.service.file_issue(title="hang", assignee="ali-cto", actor="o")
        for _ in range(100):
            if await fleet.service.recent_runs("ali-cto"):
                break
            await asyncio.sleep(0.01)
        (run,) = await fleet.service.recent_runs("ali-cto")
    # Closing the fleet stopped the hanging dispatch but could not end the run.
    async with database_for(hanging.storage) as db:
        assert [tuple(r) for r in await db.fetchall("SELECT status FROM runs")] == [("running",)]

    clock.advance(5 * 60)
    working = _fleet_config(tmp_path)
    async with Fleet(working, {}, clock, serve_api=False, periodic=False) as fleet:
        ended = await fleet.service.runs.get(run.id)
        assert (ended.status, ended.reason_code) == (RunStatus.INTERRUPTED, "interrupted")
        agent = await fleet.service.agent("ali-cto")
        assert agent.status is AgentStatus.IDLE
        assert (await fleet.service.issue(issue.id)).lease_run_id is None
        clock.advance(60)  # the retry backoff after one spent attempt
        await fleet.service.wake("ali-cto", actor="o")
        await fleet.scheduler.drain()
        after = await fleet.service.issue(issue.id)
        assert (after.status, after.attempts) == (IssueStatus.DONE, 2)
