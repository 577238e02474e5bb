"""Two `fleetbot run`s on one PostgreSQL database: both serve the agent API, one leads (the
fleetbot_leader metric says which), and when it stops the other takes over its singleton work,
including ending the runs whose turns died with it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from stack_helpers import config_data, make_auth

from core.clock import ManualClock
from core.config import Config, parse_config
from core.fleet import Fleet
from core.models import RunStatus

pytestmark = pytest.mark.postgres_only

TTL, RENEW = 1.2, 0.3


def _config(tmp_path: Path) -> Config:
    data = config_data(tmp_path)
    data["api"] = {"listen": "127.0.0.1:0"}
    for company in data["companies"]:
        for agent in company["agents"]:
            agent["runtime"] = {"kind": "simulated", "latency": 0, "turns": 2, "hang_rate": 1.0}
    return parse_config(data, "replica test config")


def _replica(config: Config, clock: ManualClock, **options: Any) -> Fleet:
    return Fleet(config, {}, clock, lease_ttl=TTL, lease_renew=RENEW, **options)


async def _leader_gauge(fleet: Fleet) -> str:
    assert fleet.server is not None
    async with httpx.AsyncClient(base_url=fleet.server.url) as client:
        text = (await client.get("/metrics")).text
    return next(line for line in text.splitlines() if line.startswith("fleetbot_leader{"))


async def test_the_standby_takes_over_and_ends_the_stopped_leaders_runs(
    tmp_path: Path, clock: ManualClock
) -> None:
    config = _config(tmp_path)
    make_auth(config, clock)
    first = await _replica(config, clock, periodic=False).__aenter__()
    try:
        async with _replica(config, clock) as second:
            assert first.leadership.leading and not second.leadership.leading
            assert (await _leader_gauge(first)).endswith(" 1.0")
            assert (await _leader_gauge(second)).endswith(" 0.0")
            listed = await second.leadership.replicas()
            assert [(r.id, r.leader) for r in listed] == [
                (first.leadership.id, True),
                (second.leadership.id, False),
            ]
            # Work filed through the standby is dispatched where it was filed: the run is
            # the standby's own (the agent hangs, so it stays live).
            issue = await second.service.file_issue(title="t", assignee="ali-cto", actor="o")
            for _ in range(200):
                if runs := await second.service.recent_runs("ali-cto"):
                    break
                await asyncio.sleep(0.01)
            # And work filed through the leader is the leader's.
            await first.service.file_issue(title="u", assignee="mat-ceo", actor="o")
            for _ in range(200):
                if theirs := await first.service.recent_runs("mat-ceo"):
                    break
                await asyncio.sleep(0.01)
            assert runs[0].status is theirs[0].status is RunStatus.RUNNING
            # The leader stops (cleanly here; bench/failover.py SIGKILLs it).
            await first.__aexit__(None, None, None)
            started = time.monotonic()
            while not second.leadership.leading:
                assert time.monotonic() - started < TTL + RENEW * 3
                await asyncio.sleep(0.02)
            assert (await _leader_gauge(second)).endswith(" 1.0")
            for _ in range(200):
                ended = await second.service.runs.get(theirs[0].id)
                if ended.status is not RunStatus.RUNNING:
                    break
                await asyncio.sleep(0.02)
            assert (ended.status, ended.reason_code) == (RunStatus.INTERRUPTED, "interrupted")
            # The standby's own live run is not an orphan.
            assert (await second.service.runs.get(runs[0].id)).status is RunStatus.RUNNING
            assert (await second.service.issue(issue.id)).lease_run_id == runs[0].id
    finally:
        await first.__aexit__(None, None, None)


async def test_a_run_cancelled_on_another_replica_stops_its_turn_where_it_runs(
    tmp_path: Path, clock: ManualClock
) -> None:
    config = _config(tmp_path)
    make_auth(config, clock)
    async with _replica(config, clock, periodic=False) as leader, _replica(config, clock) as other:
        await other.service.file_issue(title="t", assignee="ali-cto", actor="o")
        for _ in range(200):
            if runs := await other.service.recent_runs("ali-cto"):
                break
            await asyncio.sleep(0.01)
        (run,) = runs
        turn = other.scheduler._dispatches[run.id]  # the hanging agent's turn, on `other`
        await leader.service.runs.cancel(run.id, "the owner cancelled it from the phone")
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(turn, return_exceptions=True), 5)
        assert turn.cancelled() and time.monotonic() - started < 3  # ENDED_POLL 2 s
        assert run.id not in other.scheduler._dispatches
