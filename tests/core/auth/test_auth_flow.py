"""Auth end to end on a real Fleet: its API served on loopback, its heartbeat, its rotations.

Replays the field notes' outage (tokens regenerated with a wrong secret), rotates in the middle
of live API traffic (in-process and from a second process, as `fleetbot tokens rotate` in a
shell), revokes one agent, and sends junk that must not knock anyone out.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from store_helpers import storage

from core.auth.agent_auth import KeyRingFile
from core.auth.keyring import Key, KeyRing, KeyState
from core.auth.rotation import rotate_agent, rotate_all
from core.auth.tokens import TokenAuthority, write_token_file
from core.clock import Clock, ManualClock, SystemClock
from core.config import Config, parse_config
from core.errors import Conflict
from core.fleet import Fleet
from core.models import AgentStatus, HeartbeatOutcome
from fleetbot.cli import cmd_rotate

ROLES = {
    "aliens": ["ceo", "cto", "cpo", "cmo", "coo", "qa"],
    "matrix": ["ceo", "cto", "cpo", "cm", "coo", "qa"],
}
AGENTS = [f"{c[:3]}-{r}" for c, roles in ROLES.items() for r in roles]


def _config(tmp_path: Path, **runtime_by_agent: dict[str, Any]) -> Config:
    companies = []
    for cid, roles in ROLES.items():
        agents = []
        for role in roles:
            aid = f"{cid[:3]}-{role}"
            runtime = {"kind": "simulated", "latency": 0, **runtime_by_agent.get(aid, {})}
            agents.append({"id": aid, "role": role, "runtime": runtime})
        companies.append(
            {"id": cid, "name": cid.title(), "prefix": cid[:3].upper(), "agents": agents}
        )
    data = {
        "storage": storage(tmp_path),
        "api": {"listen": "127.0.0.1:0"},
        "auth": {
            "keyring": str(tmp_path / "secrets" / "keyring.json"),
            "token_dir": str(tmp_path / "secrets" / "tokens"),
            "rotation_grace": "1h",
        },
        "defaults": {
            "heartbeat": "1h",
            "wake_on_assign": False,
            "skills": {"*": ["issues.create"]},
        },
        "companies": companies,
    }
    return parse_config(data, "test")


async def _fleet(tmp_path: Path, clock: Clock, **runtimes: dict[str, Any]) -> Fleet:
    config = _config(tmp_path, **runtimes)
    if not config.auth.keyring.exists():
        KeyRing.create(config.auth.keyring, clock.now())
    return Fleet(config, {}, clock, periodic=False)


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    async with await _fleet(tmp_path, SystemClock()) as f:
        yield f


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[tuple[Fleet, ManualClock]]:
    clock = ManualClock()
    async with await _fleet(tmp_path, clock) as f:
        yield f, clock


def _tokens(fleet: Fleet) -> dict[str, str]:
    return {a: fleet.auth.token_file(a).read_text().strip() for a in AGENTS}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _statuses(fleet: Fleet) -> dict[str, tuple[AgentStatus, str]]:
    return {a.id: (a.status, a.reason_code) for a in await fleet.service.agents()}


async def _run_count(fleet: Fleet) -> int:
    return int(await fleet.db.scalar("SELECT count(*) FROM runs") or 0)


async def _file_work(fleet: Fleet) -> None:
    for agent_id in AGENTS:
        await fleet.service.file_issue(
            title=f"work for {agent_id}", assignee=agent_id, actor="owner"
        )


async def _sign_with_wrong_secret(fleet: Fleet) -> None:
    """What the field notes describe: someone regenerates every token with the wrong secret
    (here even under the right key id, so only the signature tells)."""
    active = fleet.keyring.ring.active
    wrong = KeyRing(
        Path("/nonexistent"),
        [Key(active.kid, secrets.token_bytes(32), "HS256", active.created_at, KeyState.ACTIVE)],
    )
    authority = TokenAuthority(wrong, issuer="fleetbot", audience="fleetbot-api")
    for agent in await fleet.service.agents():
        fake = authority.issue(agent, fleet.clock.now(), 86400)
        write_token_file(fleet.auth.token_dir, agent.id, fake)


async def test_field_notes_outage_replayed_end_to_end(
    manual: tuple[Fleet, ManualClock],
) -> None:
    fleet, clock = manual
    assert fleet.auth_watch.last is not None
    assert fleet.auth_watch.last.summary() == "12/12 agents authenticated"
    await _file_work(fleet)
    await _sign_with_wrong_secret(fleet)

    clock.advance(3601)
    tick = await fleet.scheduler.tick()
    await fleet.scheduler.drain()
    assert tick.beats == {HeartbeatOutcome.UNAUTHENTICATED: 12}
    assert set((await _statuses(fleet)).values()) == {
        (AgentStatus.UNAUTHENTICATED, "bad_signature")
    }
    assert await _run_count(fleet) == 0  # no runtime was called for anyone
    for agent in await fleet.service.agents():
        assert "signature does not match" in agent.reason

    # The agents, still holding the bad tokens, get a precise 401 from the API.
    async with httpx.AsyncClient(base_url=fleet.api_url) as client:
        r = await client.get("/api/v1/me", headers=_bearer(_tokens(fleet)["ali-ceo"]))
    assert r.status_code == 401 and r.json()["error"] == "bad_signature"

    # The fix, one command from the phone: rotate all. No reset, every agent back to work.
    report = await rotate_all(fleet.auth, fleet.service, "owner")
    assert report.ok and report.summary() == "12/12 agents authenticated"
    assert {s for s, _ in (await _statuses(fleet)).values()} <= {
        AgentStatus.IDLE,
        AgentStatus.RUNNING,
    }
    await fleet.scheduler.drain()  # the rotation woke them: their work is dispatched at once
    assert await _run_count(fleet) == 12
    runs = await fleet.service.recent_runs(limit=20)
    assert {r.status.value for r in runs} == {"succeeded"}
    assert {s for s, _ in (await _statuses(fleet)).values()} == {AgentStatus.IDLE}


async def test_a_fixed_token_brings_the_agent_back_at_its_next_heartbeat(
    manual: tuple[Fleet, ManualClock], tmp_path: Path
) -> None:
    fleet, clock = manual
    agents = {a.id: a for a in await fleet.service.agents()}
    foreign = TokenAuthority(
        KeyRing.create(tmp_path / "elsewhere.json", clock.now()),
        issuer="fleetbot",
        audience="fleetbot-api",
    )
    for agent in ("ali-cto", "mat-qa"):
        write_token_file(
            fleet.auth.token_dir, agent, foreign.issue(agents[agent], clock.now(), 86400)
        )
    fleet.auth.token_file("mat-cm").unlink()
    await _file_work(fleet)
    clock.advance(3601)
    tick = await fleet.scheduler.tick()
    await fleet.scheduler.drain()
    assert tick.beats == {HeartbeatOutcome.UNAUTHENTICATED: 3, HeartbeatOutcome.DISPATCHED: 9}
    statuses = await _statuses(fleet)
    assert statuses["ali-cto"] == statuses["mat-qa"] == (AgentStatus.UNAUTHENTICATED, "unknown_key")
    assert statuses["mat-cm"] == (AgentStatus.UNAUTHENTICATED, "missing_file")

    # Resetting by hand first verifies the token, and says what to do when it still fails.
    with pytest.raises(Conflict) as err:
        await fleet.service.reset("ali-cto", "owner")
    assert "unknown_key" in err.value.message and "fleetbot tokens rotate" in err.value.message
    assert (await fleet.service.agent("ali-cto")).status is AgentStatus.UNAUTHENTICATED

    for agent in ("ali-cto", "mat-qa", "mat-cm"):  # an operator restores the files
        fleet.auth.issue(agents[agent])
    clock.advance(3601)
    tick = await fleet.scheduler.tick()
    await fleet.scheduler.drain()
    assert tick.beats[HeartbeatOutcome.DISPATCHED] == 3
    assert await _run_count(fleet) == 12
    assert {s for s, _ in (await _statuses(fleet)).values()} == {AgentStatus.IDLE}


async def test_startup_self_test_names_each_failing_agent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    async with await _fleet(tmp_path, clock):
        pass
    (tmp_path / "secrets" / "tokens" / "mat-cto.jwt").write_text("garbage\n")
    caplog.set_level(logging.INFO, logger="core.auth.rotation")
    async with await _fleet(tmp_path, clock) as fleet:
        agent = await fleet.service.agent("mat-cto")
        assert (agent.status, agent.reason_code) == (AgentStatus.UNAUTHENTICATED, "malformed")
    text = caplog.text
    assert "auth self-test (startup): 11/12 agents authenticated" in text
    assert "mat-cto: malformed" in text and "fleetbot tokens rotate --agent mat-cto" in text


async def test_keys_past_their_grace_retire_on_schedule(
    manual: tuple[Fleet, ManualClock],
) -> None:
    fleet, clock = manual
    old = fleet.keyring.ring.active.kid
    # A rotation of the key alone in another process (no tokens re-issued): the running fleet
    # sees it, and its scheduled check re-tests every agent at once.
    shell = KeyRingFile(fleet.config.auth.keyring)
    shell.update(lambda ring: ring.rotate(clock.now(), 600))
    await fleet.auth_watch.tick()
    assert fleet.auth_watch.last is not None and fleet.auth_watch.last.ok  # old key in grace
    clock.advance(601)
    await fleet.auth_watch.tick()
    ring = KeyRing.load(fleet.config.auth.keyring)
    retired = ring.get(old)
    assert retired is not None and retired.state is KeyState.RETIRED
    # The tokens were never re-issued. This asserted the outage of issue 11.1 (the whole fleet
    # unauthenticated with unknown_key); now the check moves every token file still signed by
    # the old key onto the active one before it retires the old key, so nobody is locked out.
    assert set((await _statuses(fleet)).values()) == {(AgentStatus.IDLE, "")}
    assert {fleet.auth.verify(t).kid for t in _tokens(fleet).values()} == {ring.active.kid}
    await rotate_all(fleet.auth, fleet.service, "owner")
    assert {s for s, _ in (await _statuses(fleet)).values()} == {AgentStatus.IDLE}


class Traffic:
    """Status codes of a client loop, and a way to wait until it has made `n` more calls."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.stop = asyncio.Event()
        self._more = asyncio.Event()

    async def more(self, n: int) -> None:
        target = len(self.codes) + n
        while len(self.codes) < target:
            self._more.clear()
            await self._more.wait()

    async def hammer(self, client: httpx.AsyncClient, tokens: list[str]) -> None:
        i = 0
        while not self.stop.is_set():
            path = "/api/v1/me" if i % 2 else "/api/v1/inbox"
            r = await client.get(path, headers=_bearer(tokens[i % len(tokens)]))
            self.codes.append(r.status_code)
            self._more.set()
            i += 1


async def test_rotation_under_live_traffic_causes_zero_401s(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    previous = list(_tokens(fleet).values())
    first_kid = fleet.keyring.ring.active.kid
    traffic = Traffic()
    async with httpx.AsyncClient(base_url=fleet.api_url) as client:
        workers = [asyncio.create_task(traffic.hammer(client, previous)) for _ in range(4)]
        try:
            await traffic.more(50)
            report = await rotate_all(fleet.auth, fleet.service, "owner")  # in this process
            await traffic.more(50)
            # `fleetbot tokens rotate` in a shell: another process, its own store connection.
            code = await asyncio.to_thread(asyncio.run, cmd_rotate(fleet.config, {}, None))
            await traffic.more(50)
        finally:
            traffic.stop.set()
            await asyncio.gather(*workers)
        assert report.ok and code == 0
        assert "12/12 agents authenticated" in capsys.readouterr().out
        assert len(traffic.codes) >= 150
        assert set(traffic.codes) == {200}  # zero 401s, zero errors
        # The running server took the shell's key: a freshly issued token names it.
        new = _tokens(fleet)["mat-ceo"]
        me = (await client.get("/api/v1/me", headers=_bearer(new))).json()
    assert me["kid"] not in (first_kid, report.kid)
    assert me["kid"] == KeyRing.load(fleet.config.auth.keyring).active.kid


async def test_revoking_one_agent_kills_its_token_at_once_and_nobody_elses(
    fleet: Fleet,
) -> None:
    before = _tokens(fleet)
    check = await rotate_agent(fleet.auth, fleet.service, "ali-cmo", "owner")
    assert check.ok
    async with httpx.AsyncClient(base_url=fleet.api_url) as client:
        r = await client.get("/api/v1/me", headers=_bearer(before["ali-cmo"]))
        assert r.status_code == 401 and r.json()["error"] == "revoked"
        new = fleet.auth.token_file("ali-cmo").read_text().strip()
        assert (await client.get("/api/v1/me", headers=_bearer(new))).status_code == 200
        for agent, token in before.items():
            if agent != "ali-cmo":
                assert (await client.get("/api/v1/me", headers=_bearer(token))).status_code == 200
    assert (await fleet.service.agent("ali-cmo")).status is AgentStatus.IDLE


async def test_junk_tokens_are_counted_but_never_knock_an_agent_out(fleet: Fleet) -> None:
    heard: list[tuple[str, str]] = []
    fleet.guard.on_failure = lambda agent, code: heard.append((agent, code))
    good = _tokens(fleet)["ali-ceo"]
    head, body, sig = good.split(".")
    junk = [
        f"{head}.{body}.{sig[::-1]}",  # claims ali-ceo, signature mangled
        f"{head}.{body}.",  # no signature
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGktY2VvIn0.",  # alg none, no kid
        "not-a-token",
    ]
    async with httpx.AsyncClient(base_url=fleet.api_url) as client:
        codes = []
        for _ in range(5):
            for token in junk:
                r = await client.get("/api/v1/inbox", headers=_bearer(token))
                assert r.status_code == 401
                codes.append(r.json()["error"])
        r = await client.get("/api/v1/inbox")
        assert r.status_code == 401 and r.json()["error"] == "missing_token"
        metrics = (await client.get("/metrics")).text
        assert (await client.get("/api/v1/me", headers=_bearer(good))).status_code == 200
    assert set(codes) == {"bad_signature", "malformed"}
    # Only a verified signature may name an agent (issue 11): forged tokens claiming ali-ceo
    # reach no listener, so nobody is paged, and /metrics does not say ali-ceo exists.
    assert heard == []
    assert "ali-ceo" not in metrics
    assert 'fleetbot_api_auth_failures_total{agent="unverified",reason="bad_signature"}' in metrics
    assert (
        'fleetbot_api_auth_failures_total{agent="unverified",reason="missing_token"} 1.0' in metrics
    )
    assert "fleetbot_api_auth_unverified_sources 1.0" in metrics  # all of it from 127.0.0.1
    assert fleet.guard.unverified_by_source == {"127.0.0.1": 21}
    assert {s for s, _ in (await _statuses(fleet)).values()} == {AgentStatus.IDLE}


async def test_a_verified_but_expired_token_names_its_agent(fleet: Fleet) -> None:
    heard: list[tuple[str, str]] = []
    fleet.guard.on_failure = lambda agent, code: heard.append((agent, code))
    agent = await fleet.service.agent("ali-ceo")
    expired = fleet.auth.authority.issue(agent, fleet.clock.now() - 7200, 3600)
    async with httpx.AsyncClient(base_url=fleet.api_url) as client:
        r = await client.get("/api/v1/inbox", headers=_bearer(expired))
        assert r.status_code == 401 and r.json()["error"] == "expired"
        metrics = (await client.get("/metrics")).text
    assert heard == [("ali-ceo", "expired")]
    assert 'fleetbot_api_auth_failures_total{agent="ali-ceo",reason="expired"} 1.0' in metrics


async def test_deleted_agents_and_other_agents_runs_are_refused(tmp_path: Path) -> None:
    clock = SystemClock()
    async with await _fleet(tmp_path, clock, **{"ali-cto": {"hang_rate": 1.0}}) as fleet:
        tokens = _tokens(fleet)
        await fleet.service.file_issue(title="hang", assignee="ali-cto", actor="owner")
        await fleet.service.wake("ali-cto", "owner")
        for _ in range(200):
            runs = await fleet.service.recent_runs("ali-cto")
            if runs:
                break
            await asyncio.sleep(0.01)
        [run] = runs
        agent = await fleet.service.agent("ali-cto")
        run_token = fleet.auth.run_token(agent, run.id, run.deadline)
        other_run_token = fleet.auth.run_token(agent, "some-other-run", run.deadline)
        usage = {"turns": 1, "input_tokens": 1, "output_tokens": 1, "cost": 0.0}
        async with httpx.AsyncClient(base_url=fleet.api_url) as client:
            url = f"/api/v1/runs/{run.id}/usage"
            r = await client.post(url, json=usage, headers=_bearer(tokens["ali-ceo"]))
            assert r.status_code == 403 and r.json()["error"] == "not_your_run"
            r = await client.post(url, json=usage, headers=_bearer(other_run_token))
            assert r.status_code == 403 and r.json()["error"] == "not_your_run"
            r = await client.post(url, json=usage, headers=_bearer(run_token))
            assert r.status_code == 200
            async with fleet.db.write() as conn:
                await conn.execute(
                    "UPDATE agents SET deleted_at = ? WHERE id = 'mat-qa'", (clock.now(),)
                )
            r = await client.get("/api/v1/me", headers=_bearer(tokens["mat-qa"]))
            assert r.status_code == 401 and r.json()["error"] == "revoked"


async def test_a_token_file_that_cannot_be_written_fails_its_line_not_the_rotation(
    manual: tuple[Fleet, ManualClock],
) -> None:
    fleet, _ = manual
    path = fleet.auth.token_file("ali-qa")
    path.unlink()
    path.mkdir()  # something in the way that even root cannot replace with a file
    report = await rotate_all(fleet.auth, fleet.service, "owner")
    assert report.summary() == "11/12 agents authenticated"
    [line] = [x for x in report.lines() if "ali-qa" in x]
    assert line.startswith(f"  ali-qa: missing_file — cannot write {path}")
    agent = await fleet.service.agent("ali-qa")
    assert (agent.status, agent.reason_code) == (AgentStatus.UNAUTHENTICATED, "missing_file")
