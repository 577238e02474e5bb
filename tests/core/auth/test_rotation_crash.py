"""A rotation killed after every one of its steps: whoever comes next finishes it, and once the
grace is over every agent's token file still verifies (issue 11.1).

Each case runs the real `rotate_all` in a child process (`python -c`) on a real key ring, token
folder and database under tmp_path, with an `on_step` callback (the rotation's test seam) that
SIGKILLs the child right after its N-th step. Then either the next start (a new Fleet) or the
running process (a Fleet that was up all along, on its periodic check) recovers; the hand-wound
clock moves past the grace and the running process retires what it may. Every agent's token
file must verify, none may be signed by a retired key, nobody may be unauthenticated, and the
rotation's previous key must be retired after all (or, killed before the key ring was saved,
still be the only key).

Before the fix, a kill after "key ring saved" and before the last token file left files on the
previous key, and its retirement past the grace locked those agents out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from store_helpers import storage

import core
from core.auth import rotation_journal as journal
from core.auth.agent_auth import AgentAuth, KeyRingFile
from core.auth.keyring import Key, KeyRing, KeyState
from core.auth.retirement import RESIGN_AHEAD, retire_expired
from core.auth.rotation import recover, self_test
from core.auth.secretfile import locked, write_secret
from core.auth.tokens import TokenAuthority, read_token_file, write_token_file
from core.clock import ManualClock
from core.config import Config, parse_config
from core.events import EventBus
from core.fleet import Fleet
from core.models import AgentStatus
from core.service import FleetService
from core.store.engines import database_for
from fleetbot.cli import cmd_rotate

# Each case starts a child Python or two and a Fleet or two: on a loaded machine that takes
# longer than the suite's 30 s per test.
pytestmark = pytest.mark.timeout(120)

REPO = Path(core.__file__).resolve().parents[1]
GRACE = 3600.0
AGENTS = ["ripley", "bishop", "hicks"]
# journal written, key ring saved, one per token file, token files durable, journal removed
STEPS = 2 + len(AGENTS) + 2

CHILD = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys

    from core.auth.agent_auth import AgentAuth, KeyRingFile
    from core.auth.rotation import rotate_all
    from core.clock import ManualClock
    from core.config import parse_config
    from core.events import EventBus
    from core.service import FleetService
    from core.store.engines import database_for

    config = parse_config(json.loads(sys.argv[1]), "test")
    kill_after, now = int(sys.argv[2]), float(sys.argv[3])
    done = []

    def on_step(name):
        done.append(name)
        print(name, flush=True)
        if len(done) == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    async def main():
        clock = ManualClock(now)
        auth = AgentAuth(KeyRingFile(config.auth.keyring), config.auth, clock)
        async with database_for(config.storage) as db:
            service = FleetService(db, config, clock, EventBus(), token_check=auth.check_file)
            await service.sync_config()
            await rotate_all(auth, service, "shell", on_step=on_step)

    asyncio.run(main())
    """
)


def _data(tmp_path: Path) -> dict[str, Any]:
    runtime = {"kind": "simulated", "latency": 0}
    agents = [
        {"id": a, "role": r, "runtime": runtime}
        for a, r in zip(AGENTS, ("ceo", "cto", "qa"), strict=True)
    ]
    return {
        "storage": storage(tmp_path),
        "auth": {
            "keyring": str(tmp_path / "secrets" / "keyring.json"),
            "token_dir": str(tmp_path / "secrets" / "tokens"),
            "rotation_grace": f"{GRACE:.0f}s",
        },
        "defaults": {"heartbeat": "4h", "wake_on_assign": False},
        "companies": [{"id": "aliens", "name": "Aliens", "prefix": "ALI", "agents": agents}],
    }


def _fleet(config: Config, clock: ManualClock) -> Fleet:
    return Fleet(config, {}, clock, serve_api=False, periodic=False)


async def _setup(tmp_path: Path, clock: ManualClock) -> tuple[dict[str, Any], Config]:
    """A fleet that has started once: key ring, database, every agent's token file."""
    data = _data(tmp_path)
    config = parse_config(data, "test")
    KeyRing.create(config.auth.keyring, clock.now())
    async with _fleet(config, clock):
        pass
    return data, config


async def _rotate_killed(data: dict[str, Any], kill_after: int, now: float) -> list[str]:
    """`rotate_all` in a child process, killed right after step `kill_after` (0: never);
    the steps it completed."""
    argv = [sys.executable, "-c", CHILD, json.dumps(data), str(kill_after), str(now)]
    done = await asyncio.to_thread(
        subprocess.run, argv, cwd=REPO, capture_output=True, text=True, timeout=25
    )
    steps = done.stdout.splitlines()
    if kill_after:
        assert done.returncode == -signal.SIGKILL, done.stderr
        assert len(steps) == kill_after, steps
    else:
        assert done.returncode == 0, done.stderr
    return steps


async def _past_the_grace(fleet: Fleet, clock: ManualClock) -> None:
    """The running process's checks: one a minute from now, then one past the grace."""
    clock.advance(60)
    await fleet.auth_watch.tick()
    # Finished by now, long before the grace ends: the journal gone, every file on the
    # active key (not only re-signed at the last moment by the retirement check).
    assert not journal.pending(fleet.config.auth.keyring)
    active = fleet.keyring.ring.active.kid
    assert {fleet.auth.verify(t).kid for t in _tokens(fleet.config).values()} == {active}
    clock.advance(GRACE)
    await fleet.auth_watch.tick()


async def _assert_everyone_authenticated(fleet: Fleet, first_kid: str, steps: list[str]) -> None:
    agents = await fleet.service.agents()
    report = self_test(fleet.auth, agents)
    assert report.ok, "\n".join(report.lines())  # as `fleetbot tokens verify` sees it
    ring = KeyRing.load(fleet.config.auth.keyring)
    for agent in agents:
        kid = fleet.auth.verify(read_token_file(fleet.auth.token_dir, agent.id)).kid
        key = ring.get(kid)
        assert key is not None and key.state is not KeyState.RETIRED, (agent.id, key)
    assert {(a.status, a.reason_code) for a in agents} == {(AgentStatus.IDLE, "")}
    assert not journal.pending(fleet.config.auth.keyring)
    first = ring.get(first_kid)
    assert first is not None
    if "key ring saved" in steps:  # rotated: and its previous key retired in the end
        assert ring.active.kid != first_kid and first.state is KeyState.RETIRED
    else:  # killed before the key ring changed: rolled back, nothing else happened
        assert [k.kid for k in ring.keys] == [first_kid]


async def test_a_rotation_takes_these_steps(tmp_path: Path) -> None:
    clock = ManualClock()
    data, _ = await _setup(tmp_path, clock)
    steps = await _rotate_killed(data, 0, clock.now())
    assert steps[:2] == ["journal written", "key ring saved"]
    assert sorted(steps[2:-2]) == sorted(f"token file {a}" for a in AGENTS)
    assert steps[-2:] == ["token files durable", "journal removed"]
    assert len(steps) == STEPS  # the cases below kill after each one of them


@pytest.mark.parametrize("kill_after", range(1, STEPS + 1))
async def test_the_next_start_finishes_a_rotation_killed_after_any_step(
    tmp_path: Path, kill_after: int
) -> None:
    clock = ManualClock()
    data, config = await _setup(tmp_path, clock)
    first = KeyRing.load(config.auth.keyring).active.kid
    steps = await _rotate_killed(data, kill_after, clock.now())
    async with _fleet(config, clock) as fleet:  # the next start
        assert not journal.pending(config.auth.keyring)
        await _past_the_grace(fleet, clock)
        await _assert_everyone_authenticated(fleet, first, steps)


@pytest.mark.parametrize("kill_after", range(1, STEPS + 1))
async def test_the_running_process_finishes_a_rotation_killed_after_any_step(
    tmp_path: Path, kill_after: int
) -> None:
    """`fleetbot tokens rotate` in a shell, killed, next to a `fleetbot run` that stays up."""
    clock = ManualClock()
    data, config = await _setup(tmp_path, clock)
    async with _fleet(config, clock) as fleet:
        first = fleet.keyring.ring.active.kid
        steps = await _rotate_killed(data, kill_after, clock.now())
        await _past_the_grace(fleet, clock)
        await _assert_everyone_authenticated(fleet, first, steps)


@pytest.mark.parametrize("kill_after", range(1, len(AGENTS) + 3))
async def test_a_recovery_killed_after_any_step_is_finished_too(
    tmp_path: Path, kill_after: int
) -> None:
    """The next `fleetbot tokens rotate` first finishes the killed one, and is killed itself
    while doing so (after each token file, the folder's fsync, the journal's removal)."""
    clock = ManualClock()
    data, config = await _setup(tmp_path, clock)
    first = KeyRing.load(config.auth.keyring).active.kid
    steps = await _rotate_killed(data, 3, clock.now())  # key ring saved, one token file
    again = await _rotate_killed(data, kill_after, clock.now())
    assert "journal written" not in again  # killed while finishing the first one
    async with _fleet(config, clock) as fleet:
        await _past_the_grace(fleet, clock)
        await _assert_everyone_authenticated(fleet, first, steps)


async def test_the_next_rotation_finishes_an_interrupted_one_first(tmp_path: Path) -> None:
    clock = ManualClock(time.time())  # `fleetbot tokens rotate` runs on the system clock
    data, config = await _setup(tmp_path, clock)
    first = KeyRing.load(config.auth.keyring).active.kid
    await _rotate_killed(data, 3, clock.now())  # key ring saved, one token file rewritten
    assert journal.pending(config.auth.keyring)
    assert await cmd_rotate(config, {}, None) == 0  # `fleetbot tokens rotate` again
    assert not journal.pending(config.auth.keyring)
    ring = KeyRing.load(config.auth.keyring)
    assert len(ring.keys) == 3 and ring.get(first) is not None
    async with _fleet(config, clock) as fleet:
        kids = {fleet.auth.verify(t).kid for t in _tokens(config).values()}
        assert kids == {ring.active.kid}
        rows = await fleet.db.fetchall("SELECT actor, action FROM audit ORDER BY id")
    assert [tuple(r) for r in rows[-2:]] == [
        ("fleetbot", "tokens.rotate_all.completed"),
        ("cli", "tokens.rotate_all"),
    ]


async def test_a_live_rotation_is_never_recovered_under_it(tmp_path: Path) -> None:
    """A journal next to a held lock is a rotation still at work: recovery waits for it."""
    clock = ManualClock()
    data, config = await _setup(tmp_path, clock)
    await _rotate_killed(data, 2, clock.now())  # key ring saved, no token file yet
    before = _tokens(config)
    auth = AgentAuth(KeyRingFile(config.auth.keyring), config.auth, clock)
    async with database_for(config.storage) as db:
        service = FleetService(db, config, clock, EventBus(), token_check=auth.check_file)
        with locked(config.auth.keyring):  # as the rotating process holds it
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(recover(auth, service), 0.3)
            assert _tokens(config) == before and journal.pending(config.auth.keyring)
        report = await recover(auth, service)
        assert report is not None and report.ok
        assert not journal.pending(config.auth.keyring)
        assert {auth.verify(t).kid for t in _tokens(config).values()} == {report.kid}


async def test_a_damaged_journal_completes_the_rotation(tmp_path: Path) -> None:
    clock = ManualClock()
    data, config = await _setup(tmp_path, clock)
    await _rotate_killed(data, 2, clock.now())
    write_secret(journal.journal_path(config.auth.keyring), "{not json")
    async with _fleet(config, clock) as fleet:
        active = fleet.keyring.ring.active.kid
        assert {fleet.auth.verify(t).kid for t in _tokens(config).values()} == {active}


def _tokens(config: Config) -> dict[str, str]:
    return {a: read_token_file(config.auth.token_dir, a) for a in AGENTS}


# -- retirement: never while a token file is signed by the key -----------------------------


def _ring_only_rotation(config: Config, clock: ManualClock) -> str:
    """A key ring rotated without its token files (by hand, or by a fleetbot before this
    fix killed half-way); the previous key's kid."""
    ring = KeyRing.load(config.auth.keyring)
    old = ring.active.kid
    ring.rotate(clock.now(), GRACE)
    return old


async def test_a_file_that_cannot_be_moved_off_the_key_keeps_it_verifying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    _, config = await _setup(tmp_path, clock)
    old = _ring_only_rotation(config, clock)
    stuck = config.auth.token_dir / "bishop.jwt"
    real_write = write_secret

    def failing(path: Path, data: bytes | str, *, fsync: bool = True) -> None:
        if path == stuck:
            raise OSError(30, "Read-only file system")
        real_write(path, data, fsync=fsync)

    monkeypatch.setattr("core.auth.retirement.write_secret", failing)
    async with _fleet(config, clock) as fleet:
        caplog.set_level(logging.WARNING, logger="core.auth.retirement")
        clock.advance(GRACE + 60)
        await fleet.auth_watch.tick()
        ring = KeyRing.load(config.auth.keyring)
        key = ring.get(old)
        assert key is not None and key.state is KeyState.VERIFY_ONLY
        assert key.verifies_at(clock.now())  # kept: bishop is still signed by it
        assert "kept key" in caplog.text and "bishop.jwt: Read-only file system" in caplog.text
        kids = {a: fleet.auth.verify(t).kid for a, t in _tokens(config).items()}
        assert kids == {"ripley": ring.active.kid, "bishop": old, "hicks": ring.active.kid}
        assert self_test(fleet.auth, await fleet.service.agents()).ok

        monkeypatch.setattr("core.auth.retirement.write_secret", real_write)  # folder fixed
        clock.advance(RESIGN_AHEAD)  # past the grace it was kept for
        await fleet.auth_watch.tick()
        key = KeyRing.load(config.auth.keyring).get(old)
        assert key is not None and key.state is KeyState.RETIRED
        assert {fleet.auth.verify(t).kid for t in _tokens(config).values()} == {ring.active.kid}
        assert self_test(fleet.auth, await fleet.service.agents()).ok


async def test_a_forged_file_is_not_re_signed_and_does_not_hold_the_key(tmp_path: Path) -> None:
    clock = ManualClock()
    _, config = await _setup(tmp_path, clock)
    previous = KeyRing.load(config.auth.keyring).active
    old = _ring_only_rotation(config, clock)
    ring = KeyRing.load(config.auth.keyring)
    # hicks's file names the old key but was signed with another secret: it never verified.
    wrong = Key(previous.kid, b"x" * 32, "HS256", previous.created_at, KeyState.ACTIVE)
    forger = TokenAuthority(
        KeyRing(Path("/nonexistent"), [wrong]), issuer="fleetbot", audience="fleetbot-api"
    )
    async with _fleet(config, clock) as fleet:
        hicks = await fleet.service.agent("hicks")
        forged = forger.issue(hicks, clock.now(), 86400)
        write_token_file(config.auth.token_dir, "hicks", forged)
        clock.advance(GRACE + 1)
        assert retire_expired(fleet.auth, clock.now()) == [old]
        assert read_token_file(config.auth.token_dir, "hicks") == forged  # left as it was
        problem = fleet.auth.check_file(hicks)
        assert problem is not None and problem.code == "unknown_key"
        ripley = read_token_file(config.auth.token_dir, "ripley")
        assert fleet.auth.verify(ripley).kid == ring.active.kid
