"""`fleetbot init`, `check` and `tokens` as an operator runs them: output lines and exit codes
(`check` tests every agent's token and runtime)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from core.auth.keyring import Key, KeyRing, KeyState
from core.auth.tokens import TokenAuthority, write_token_file
from core.config import load_config
from core.fleet import Fleet
from core.models import Agent, AgentStatus
from fleetbot.cli import main

CONFIG = {
    "telegram": {"owners": [1001]},  # someone can use the bot: `check` warns of nothing
    "storage": {"path": "fleet.db"},
    "api": {"listen": "127.0.0.1:0"},
    "defaults": {"wake_on_assign": False},
    "companies": [
        {
            "id": "aliens",
            "name": "Alex Kerber AB",
            "prefix": "ALI",
            "agents": [
                {"id": "ripley", "role": "ceo", "runtime": {"kind": "simulated", "latency": 0}},
                {
                    "id": "bishop",
                    "role": "cto",
                    "runtime": {"kind": "simulated", "latency": 0, "hang_rate": 1.0},
                },
            ],
        }
    ],
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No stray secrets or config from the machine running the tests; logging restored after
    main() set up its own handler."""
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


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A folder after `fleetbot init` with our two-agent config; returns the config path."""
    folder = tmp_path / "fleet"
    folder.mkdir()
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    code, out, _ = _run(capsys, "init", str(folder))
    assert code == 0, out
    return path


def _secrets(config: Path) -> Path:
    return config.parent / "secrets"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_from_the_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "new"
    code, out, _ = _run(capsys, "init", str(folder))
    assert code == 0
    ring = folder / "secrets" / "keyring.json"
    assert f"wrote {folder / 'config.yaml'}" in out
    assert f"wrote {ring} (mode 0600)" in out
    assert "tokens: wrote 2, kept 0" in out and "2/2 agents authenticated" in out
    assert _mode(ring) == 0o600
    for agent in ("ripley", "bishop"):
        assert _mode(folder / "secrets" / "tokens" / f"{agent}.jwt") == 0o600
    code, out, _ = _run(capsys, "init", str(folder))  # again: keeps everything
    assert code == 0 and f"kept {ring} (exists)" in out and "tokens: wrote 0, kept 2" in out


def test_check_and_verify_pass(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "check", "-c", str(setup))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "config ok: 1 companies, 2 agents"
    assert lines[1].startswith(f"key ring ok: {_secrets(setup) / 'keyring.json'} (active key k")
    assert lines[2] == "2/2 agents authenticated"
    assert lines[3:] == ["2/2 runtimes reachable"]
    code, out, _ = _run(capsys, "tokens", "verify", "-c", str(setup), "-v")
    assert code == 0 and "  ripley: ok" in out and "  bishop: ok" in out
    assert "runtimes" not in out  # tokens only


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_names_a_dead_runtime_once_with_its_agents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/wake"
    dead = {"kind": "http", "url": url, "timeout": "2s"}
    data = json.loads(json.dumps(CONFIG))
    agents = data["companies"][0]["agents"]
    agents[1]["runtime"] = dead
    agents.append({"id": "hicks", "role": "qa", "runtime": dead})
    folder = tmp_path / "fleet"
    folder.mkdir()
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    assert _run(capsys, "init", str(folder))[0] == 0

    code, out, _ = _run(capsys, "check", "-c", str(path))
    assert code == 1  # every token verifies, but a runtime is down
    lines = out.splitlines()
    assert lines[2] == "3/3 agents authenticated"
    assert lines[3] == "1/3 runtimes reachable"
    [line] = lines[4:]  # one line for the endpoint, naming both agents behind it
    where = f"the agent at {url}"
    assert line.startswith(f"  {where} — runtime_unreachable, agents bishop, hicks: ")
    assert "Fix: Check `url` and that the agent is running" in line

    code, out, _ = _run(capsys, "check", "-v", "-c", str(path))
    assert code == 1 and "  ripley: ok (the simulated runtime)" in out


def test_check_names_each_failing_agent_and_its_fix(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = _secrets(setup) / "tokens"
    (tokens / "bishop.jwt").write_text("not a token\n")
    code, out, _ = _run(capsys, "check", "-c", str(setup))
    assert code == 1
    assert "1/2 agents authenticated" in out
    assert (
        "  bishop: malformed — the token is not a JWT. "
        "Fix: `fleetbot tokens rotate --agent bishop` (or /rotate bishop in the chat)"
    ) in out
    (tokens / "ripley.jwt").unlink()
    code, out, _ = _run(capsys, "tokens", "verify", "-c", str(setup))
    assert code == 1 and "0/2 agents authenticated" in out and "  ripley: missing_file" in out


def test_outage_and_rotate_all_from_a_shell(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ring_path = _secrets(setup) / "keyring.json"
    ring = KeyRing.load(ring_path)
    active = ring.active
    wrong = KeyRing(
        ring_path,
        [Key(active.kid, secrets.token_bytes(32), "HS256", active.created_at, KeyState.ACTIVE)],
    )
    authority = TokenAuthority(wrong, issuer="fleetbot", audience="fleetbot-api")
    config = load_config(setup, {})
    for agent in ("ripley", "bishop"):
        token = authority.issue(_agent(agent), active.created_at, 86400)
        write_token_file(config.auth.token_dir, agent, token)
    code, out, _ = _run(capsys, "check", "-c", str(setup))
    assert code == 1
    assert "0/2 agents authenticated" in out
    assert "2 agents fail with bad_signature: one `fleetbot tokens rotate`" in out

    code, out, _ = _run(capsys, "tokens", "rotate", "-c", str(setup))
    assert code == 0
    assert out.startswith("new active key k") and "verifies for 3600s more" in out
    assert "2/2 agents authenticated" in out
    states = {k.kid: k.state for k in KeyRing.load(ring_path).keys}
    assert states[active.kid] is KeyState.VERIFY_ONLY and len(states) == 2
    assert _run(capsys, "check", "-c", str(setup))[0] == 0


def _agent(agent_id: str) -> Agent:
    return Agent(
        id=agent_id,
        company_id="aliens",
        name=agent_id,
        role="ceo",
        reports_to=None,
        status=AgentStatus.IDLE,
        reason="",
        reason_code="",
        status_changed_at=0,
        model="m",
        heartbeat_seconds=1,
        next_heartbeat_at=0,
        token_version=0,
        skills=(),
        max_turns=1,
        run_timeout_seconds=1,
    )


def test_rotate_one_agent_revokes_its_old_token(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _secrets(setup) / "tokens" / "ripley.jwt"
    old = path.read_text()
    code, out, _ = _run(capsys, "tokens", "rotate", "--agent", "ripley", "-c", str(setup))
    assert code == 0
    assert out.strip() == f"ripley: new token written to {path}; the old one is revoked"
    assert path.read_text() != old
    path.write_text(old)  # someone restores the old file from a backup
    code, out, _ = _run(capsys, "check", "-c", str(setup))
    assert code == 1 and "  ripley: revoked — the token of ripley was revoked" in out
    code, _, err = _run(capsys, "tokens", "rotate", "--agent", "nobody", "-c", str(setup))
    assert code == 2 and "no agent 'nobody'" in err


def test_refusals_exit_2_with_the_fix(
    setup: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = _secrets(setup) / "keyring.json"
    os.chmod(ring, 0o640)
    code, _, err = _run(capsys, "check", "-c", str(setup))
    assert code == 2 and f"chmod 600 {ring}" in err
    os.chmod(ring, 0o600)

    monkeypatch.setenv("JWT_SECRET", "the-old-secret-value")
    code, _, err = _run(capsys, "tokens", "rotate", "-c", str(setup))
    assert code == 2
    assert "two sources of signing keys" in err and str(ring) in err and "JWT_SECRET" in err
    assert "the-old-secret-value" not in err
    monkeypatch.delenv("JWT_SECRET")

    data = yaml.safe_load(setup.read_text())
    data["auth"] = {"keys": [{"kid": "k1"}]}
    bad = setup.with_name("bad.yaml")
    bad.write_text(yaml.safe_dump(data))
    code, _, err = _run(capsys, "check", "-c", str(bad))
    assert code == 2 and "two sources of signing keys" in err and "auth.keys" in err

    ring.rename(ring.with_name("moved.json"))
    code, _, err = _run(capsys, "check", "-c", str(setup))
    assert code == 2 and "fleetbot init" in err


def test_jwks(
    setup: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, err = _run(capsys, "tokens", "jwks", "-c", str(setup))
    assert code == 1 and "no EdDSA key" in err
    pytest.importorskip("cryptography")
    folder = tmp_path / "ed"
    monkeypatch.setenv("FLEETBOT_AUTH__ALGORITHM", "EdDSA")
    code, out, _ = _run(capsys, "init", str(folder))
    assert code == 0 and "2/2 agents authenticated" in out
    code, out, _ = _run(capsys, "tokens", "jwks", "-c", str(folder / "config.yaml"))
    assert code == 0
    [key] = json.loads(out)["keys"]
    assert key["kty"] == "OKP" and key["alg"] == "EdDSA"


async def test_shell_rotation_leaves_a_running_fleets_runs_alone(setup: Path) -> None:
    """`fleetbot tokens rotate` next to `fleetbot run` must not interrupt live runs, and the
    running process must accept the new tokens at once."""
    config = load_config(setup, {})
    async with Fleet(config, {}, periodic=False) as fleet:
        await fleet.service.file_issue(title="long job", assignee="bishop", actor="owner")
        await fleet.service.wake("bishop", "owner")
        for _ in range(100):
            if await fleet.service.recent_runs("bishop"):
                break
            await asyncio.sleep(0.01)
        code = await asyncio.to_thread(main, ["tokens", "rotate", "-c", str(setup)])
        assert code == 0
        [run] = await fleet.service.recent_runs("bishop")
        assert run.status.value == "running"
        token = fleet.auth.token_file("ripley").read_text().strip()
        assert fleet.auth.verify(token).kid == KeyRing.load(config.auth.keyring).active.kid
