"""Credentials die when they should (issue 11.6): a re-added agent's old token, a key ring
that is a link, a token folder others may write in, and permissions that loosen while running."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from store_helpers import storage

from core.auth.agent_auth import KeyRingFile
from core.auth.keyring import KeyRing
from core.auth.rotation import rotate_agent, rotate_all
from core.auth.tokens import read_token_file
from core.clock import ManualClock
from core.config import Config, parse_config
from core.errors import KeyRingError
from core.fleet import Fleet
from core.models import AgentStatus
from fleetbot.cli import main

AGENTS = ["ripley", "hicks", "bishop"]


def _data(tmp_path: Path, agents: list[str] = AGENTS) -> dict[str, Any]:
    return {
        "telegram": {"owners": [1001]},
        "storage": storage(tmp_path),
        "api": {"listen": "127.0.0.1:0"},
        "auth": {
            "keyring": str(tmp_path / "secrets" / "keyring.json"),
            "token_dir": str(tmp_path / "secrets" / "tokens"),
        },
        "defaults": {"heartbeat": "1h", "wake_on_assign": False},
        "companies": [
            {
                "id": "aliens",
                "name": "Aliens",
                "prefix": "ALI",
                "agents": [
                    {"id": a, "role": "cto", "runtime": {"kind": "simulated", "latency": 0}}
                    for a in agents
                ],
            }
        ],
    }


def _config(tmp_path: Path, agents: list[str] = AGENTS) -> Config:
    return parse_config(_data(tmp_path, agents), "test")


def _fleet(tmp_path: Path, clock: ManualClock, agents: list[str] = AGENTS) -> Fleet:
    config = _config(tmp_path, agents)
    if not config.auth.keyring.exists():
        KeyRing.create(config.auth.keyring, clock.now())
    return Fleet(config, {}, clock, periodic=False)


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    async with _fleet(tmp_path, ManualClock()) as f:
        yield f


async def _me(fleet: Fleet, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=fleet.api_url) as client:
        return await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})


async def test_an_agent_removed_and_added_again_does_not_get_its_old_token_back(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    token_dir = tmp_path / "secrets" / "tokens"
    async with _fleet(tmp_path, clock):
        old = read_token_file(token_dir, "hicks")
    async with _fleet(tmp_path, clock, ["ripley", "bishop"]) as fleet:
        r = await _me(fleet, old)
        assert r.status_code == 401 and r.json()["error"] == "revoked"  # removed: refused
    clock.advance(5)
    async with _fleet(tmp_path, clock) as fleet:  # hicks is back in the config
        r = await _me(fleet, old)
        assert r.status_code == 401 and r.json()["error"] == "revoked"
        # The start wrote it a new token file over the stale one, and that one works.
        new = read_token_file(token_dir, "hicks")
        assert new != old
        r = await _me(fleet, new)
        assert r.status_code == 200 and r.json()["agent_id"] == "hicks"
        assert fleet.auth_watch.last is not None and fleet.auth_watch.last.ok
        hicks = await fleet.service.agent("hicks")
        assert (hicks.status, hicks.reason_code) == (AgentStatus.IDLE, "")
        # Nobody else's token was touched.
        assert (await _me(fleet, read_token_file(token_dir, "ripley"))).status_code == 200


async def test_a_stale_token_file_of_a_rotated_agent_is_replaced_at_start(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    token_dir = tmp_path / "secrets" / "tokens"
    async with _fleet(tmp_path, clock) as fleet:
        old = read_token_file(token_dir, "bishop")
        await rotate_agent(fleet.auth, fleet.service, "bishop", "owner")
    (token_dir / "bishop.jwt").write_text(old + "\n")  # as if the rotation's write was lost
    async with _fleet(tmp_path, clock) as fleet:
        assert fleet.auth_watch.last is not None and fleet.auth_watch.last.ok
        assert (await _me(fleet, old)).json()["error"] == "revoked"
        assert read_token_file(token_dir, "bishop") != old


def test_a_key_ring_that_is_a_link_is_refused_and_never_split(tmp_path: Path) -> None:
    real = tmp_path / "vault" / "keyring.json"
    ring = KeyRing.create(real, 1_767_225_600.0)
    link = tmp_path / "secrets" / "keyring.json"
    link.parent.mkdir()
    link.symlink_to(real)
    before = real.read_bytes()
    with pytest.raises(KeyRingError) as err:
        KeyRing.load(link)
    assert "symbolic link" in err.value.message
    assert f"Point auth.keyring at the real file ({real})" in err.value.message
    with pytest.raises(KeyRingError, match="symbolic link"):
        KeyRingFile(link)
    # A ring loaded from the real file but saved through the link is refused too.
    with pytest.raises(KeyRingError, match="symbolic link"):
        KeyRing(link, ring.keys).rotate(1_767_225_601.0, 60)
    assert link.is_symlink() and real.read_bytes() == before  # one key ring, as it was


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("FLEETBOT_") or "JWT" in name:
            monkeypatch.delenv(name)
    monkeypatch.setenv("FLEETBOT_TELEGRAM_TOKEN", "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


async def _start(tmp_path: Path) -> None:
    async with _fleet(tmp_path, ManualClock()):
        pass


@pytest.mark.usefixtures("cli_env")
def test_a_token_folder_writable_by_others_is_refused_at_start_and_in_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_data(tmp_path)))
    assert main(["init", str(tmp_path)]) == 0
    token_dir = tmp_path / "secrets" / "tokens"
    for mode in (0o770, 0o702):
        os.chmod(token_dir, mode)
        with pytest.raises(KeyRingError) as err:
            asyncio.run(_start(tmp_path))
        assert err.value.message == (
            f"{token_dir}: the token folder is writable by other users; fix it with "
            f"`chmod 700 {token_dir}`."
        )
        capsys.readouterr()
        assert main(["check", "-c", str(path)]) == 2
        assert f"`chmod 700 {token_dir}`" in capsys.readouterr().err
    os.chmod(token_dir, 0o750)  # readable by the group is the operator's call; writable is not
    assert main(["check", "-c", str(path)]) == 0


async def test_a_key_ring_loosened_while_running_is_named_and_signs_nothing(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    ring_path = fleet.config.auth.keyring
    hicks = await fleet.service.agent("hicks")
    before = read_token_file(fleet.auth.token_dir, "hicks")
    caplog.set_level(logging.INFO, logger="core.auth.rotation")
    os.chmod(ring_path, 0o644)
    await fleet.auth_watch.tick()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"auth files: {ring_path}: the key ring is readable or writable by other users; "
        f"fix it with `chmod 600 {ring_path}`."
    ]
    with pytest.raises(KeyRingError, match="refused to sign a token"):
        fleet.auth.issue(hicks)
    with pytest.raises(KeyRingError, match="refused to sign a token"):
        fleet.auth.run_token(hicks, "run-1", fleet.clock.now() + 600)
    with pytest.raises(KeyRingError):
        await rotate_all(fleet.auth, fleet.service, "owner")
    with pytest.raises(KeyRingError, match="refused to sign a token"):
        await rotate_agent(fleet.auth, fleet.service, "hicks", "owner")
    assert read_token_file(fleet.auth.token_dir, "hicks") == before
    assert (await fleet.service.agent("hicks")).token_version == hicks.token_version
    # Verifying goes on: the fleet keeps working while the operator fixes the file.
    assert (await _me(fleet, before)).status_code == 200

    os.chmod(ring_path, 0o600)
    caplog.clear()
    await fleet.auth_watch.tick()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "fine again" in caplog.text
    fleet.auth.issue(hicks)


async def test_a_key_ring_swapped_for_a_link_or_an_open_token_folder_is_named_while_running(
    fleet: Fleet, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    ring_path = fleet.config.auth.keyring
    token_dir = fleet.auth.token_dir
    real = tmp_path / "vault" / "keyring.json"
    real.parent.mkdir()
    ring_path.rename(real)
    ring_path.symlink_to(real)
    os.chmod(token_dir, 0o777)
    caplog.set_level(logging.ERROR, logger="core.auth.rotation")
    await fleet.auth_watch.tick()
    text = caplog.text
    assert f"Point auth.keyring at the real file ({real})" in text
    assert f"`chmod 700 {token_dir}`" in text
    with pytest.raises(KeyRingError, match="symbolic link"):
        fleet.auth.issue(await fleet.service.agent("ripley"))
    assert ring_path.is_symlink()
    os.chmod(token_dir, 0o700)
