"""Fixtures of the real-OpenClaw suite: the gateway from npm, on loopback, on a fake model.

`scripts/install_openclaw.sh` provides Node and openclaw (or takes FLEETBOT_E2E_NODE and
FLEETBOT_E2E_OPENCLAW); a failed install fails the suite, it never skips it. The `gateway`
fixture (one per session) writes an OpenClaw config into a temporary home — loopback only, a
gateway token, hooks with their own token, nothing that reaches the network, the fake model as
`fake/cheap` — starts `openclaw gateway run`, waits for /readyz and stops it at the end.
`strict_gateway` is a second one whose auth rate limit also covers loopback (for the lockout).

These tests run only when asked for: `pytest -m e2e tests/e2e -p no:randomly`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import protocol
from tests.e2e.fake_model import FakeModel, Reply

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "install_openclaw.sh"
E2E_TIMEOUT = 180  # seconds per test, fixture start-up included
READY_TIMEOUT = 90.0
STOP_GRACE = 15.0
GATEWAY_TOKEN = "e2e-gateway-token-0123456789abcdef"
HOOKS_TOKEN = "e2e-hooks-token-fedcba9876543210"

TIMINGS: list[str] = []  # printed at the end of the run


@dataclass(frozen=True, slots=True)
class OpenClaw:
    """Where the install put things."""

    node: Path
    package: Path  # the openclaw package folder (holds openclaw.mjs)


@dataclass(frozen=True, slots=True)
class Gateway:
    """A running gateway and what a test needs to talk to it."""

    ws_url: str
    http_url: str
    port: int
    token: str
    hooks_token: str
    model: FakeModel
    log_path: Path  # OpenClaw's own log (logging.file)
    stdout_path: Path  # the process's stdout and stderr
    home: Path

    def log_tail(self, lines: int = 40) -> str:
        """The end of both logs, for assertion messages."""
        out = []
        for path in (self.stdout_path, self.log_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install() -> OpenClaw:
    """Run the install script (a no-op when the cache is complete) and read where it put things."""
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"{INSTALL_SCRIPT.name} failed (exit {done.returncode}); the real-OpenClaw suite "
            f"cannot run without it:\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    found = dict(
        line.split("=", 1) for line in done.stdout.splitlines() if line.startswith("FLEETBOT_E2E_")
    )
    TIMINGS.append(f"install check: {time.monotonic() - started:.1f} s")
    return OpenClaw(Path(found["FLEETBOT_E2E_NODE"]), Path(found["FLEETBOT_E2E_OPENCLAW"]))


def gateway_config(
    home: Path,
    port: int,
    model: FakeModel,
    *,
    exempt_loopback: bool = True,
    max_attempts: int = 10,
) -> dict[str, Any]:
    """An OpenClaw config for tests: loopback, tokens, hooks, the fake model, no network."""
    return {
        "gateway": {
            "mode": "local",
            "port": port,
            "bind": "loopback",
            "auth": {
                "mode": "token",
                "token": GATEWAY_TOKEN,
                "rateLimit": {
                    "maxAttempts": max_attempts,
                    "windowMs": 60_000,
                    "lockoutMs": 300_000,
                    "exemptLoopback": exempt_loopback,
                },
            },
            "controlUi": {"enabled": False},
        },
        "hooks": {
            "enabled": True,
            "token": HOOKS_TOKEN,
            "path": "/hooks",
            "allowedAgentIds": ["main"],
        },
        # A scripted model repeating a tool call would otherwise loop for a minute.
        "tools": {"loopDetection": {"enabled": True}},
        "update": {"checkOnStart": False},
        "telemetry": {"enabled": False},
        "logging": {"file": str(home / "logs" / "openclaw.log"), "level": "info"},
        "models": {
            "mode": "merge",
            "catalogRefresh": {"enabled": False},
            "providers": {
                "fake": {
                    "baseUrl": model.base_url,
                    "apiKey": "sk-fake-local",
                    "api": "openai-completions",
                    "timeoutSeconds": 60,
                    "models": [
                        {
                            "id": "cheap",
                            "name": "Fake Cheap",
                            "reasoning": False,
                            "input": ["text"],
                            "cost": {"input": 1, "output": 2, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 128_000,
                            "maxTokens": 4096,
                        }
                    ],
                }
            },
        },
        "agents": {
            "defaults": {
                "workspace": str(home / "workspace"),
                "model": {"primary": "fake/cheap"},
                "heartbeat": {"every": "0m"},  # no background model calls
            }
        },
        "plugins": {"entries": {"memory-core": {"config": {"dreaming": {"enabled": False}}}}},
    }


def gateway_env(openclaw: OpenClaw, home: Path, config_path: Path) -> dict[str, str]:
    """The embedding preset of OpenClaw's docs, offline and quiet, everything under `home`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PASSWORD")
    }
    env.update(
        PATH=f"{openclaw.node.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        OPENCLAW_HOME=str(home / "home"),
        OPENCLAW_STATE_DIR=str(home / "state"),
        OPENCLAW_CONFIG_PATH=str(config_path),
        OPENCLAW_DISABLE_BONJOUR="1",
        OPENCLAW_NO_RESPAWN="1",
        OPENCLAW_SKIP_CHANNELS="1",
        OPENCLAW_EXEC_SHELL_SNAPSHOT="0",
        OPENCLAW_NO_AUTO_UPDATE="1",
        OPENCLAW_OFFLINE="1",
        DO_NOT_TRACK="1",
    )
    return env


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(json.loads(r.read()).get("ready"))
    except (OSError, ValueError):  # not listening yet, or 503 while sidecars start
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the gateway's process group (it and the shells its tools ran), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    proc.wait(5)


def _warm_up(gateway: Gateway) -> None:
    """One turn through the gateway: OpenClaw's first turn after a start sets up the agent's
    workspace and takes 10-20 s, which no test should pay for or measure."""
    tag = gateway.model.scenario(Reply("warm"))
    turn = protocol.run_turn(gateway.ws_url, gateway.token, f"warm-up {tag}")
    # In a thread of its own: its event loop never meets the tests' loops.
    with ThreadPoolExecutor(1) as pool:
        _, outcome = pool.submit(asyncio.run, turn).result(READY_TIMEOUT)
    if outcome["status"] != "ok":
        pytest.fail(f"the warm-up turn failed: {outcome}\n{gateway.log_tail()}", pytrace=False)


@contextmanager
def running_gateway(
    openclaw: OpenClaw,
    home: Path,
    model: FakeModel,
    *,
    exempt_loopback: bool = True,
    max_attempts: int = 10,
    warm_up: bool = True,
) -> Iterator[Gateway]:
    """Start a gateway in `home` on a free port, wait until it is ready (and has run one turn,
    with `warm_up`), stop it afterwards."""
    for sub in ("home", "state", "workspace", "logs"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = gateway_config(
        home, port, model, exempt_loopback=exempt_loopback, max_attempts=max_attempts
    )
    config_path = home / "openclaw.json"
    config_path.write_text(json.dumps(config, indent=2))
    stdout_path = home / "logs" / "gateway.out"
    handle = Gateway(
        ws_url=f"ws://127.0.0.1:{port}",
        http_url=f"http://127.0.0.1:{port}",
        port=port,
        token=GATEWAY_TOKEN,
        hooks_token=HOOKS_TOKEN,
        model=model,
        log_path=home / "logs" / "openclaw.log",
        stdout_path=stdout_path,
        home=home,
    )
    command = [
        str(openclaw.node),
        str(openclaw.package / "openclaw.mjs"),
        *("gateway", "run", "--port", str(port), "--bind", "loopback"),
    ]
    started = time.monotonic()
    with stdout_path.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=gateway_env(openclaw, home, config_path),
            cwd=home,
            start_new_session=True,  # its own process group: stopped as one
        )
    try:
        while not _ready(f"{handle.http_url}/readyz"):
            if proc.poll() is not None:
                pytest.fail(
                    f"the OpenClaw gateway exited with {proc.returncode} while starting:\n"
                    + handle.log_tail(),
                    pytrace=False,
                )
            if time.monotonic() - started > READY_TIMEOUT:
                pytest.fail(
                    f"the OpenClaw gateway was not ready within {READY_TIMEOUT:.0f} s:\n"
                    + handle.log_tail(),
                    pytrace=False,
                )
            time.sleep(0.25)
        which = "gateway" if exempt_loopback else "strict gateway"
        TIMINGS.append(f"{which} start-up to /readyz: {time.monotonic() - started:.1f} s")
        if warm_up:
            warming = time.monotonic()
            _warm_up(handle)
            TIMINGS.append(f"{which} first (warm-up) turn: {time.monotonic() - warming:.1f} s")
        yield handle
    finally:
        stopping = time.monotonic()
        _stop(proc)
        TIMINGS.append(f"gateway stop: {time.monotonic() - stopping:.1f} s")


@pytest.fixture(scope="session")
def openclaw() -> OpenClaw:
    return install()


@pytest.fixture(scope="session")
def fake_model() -> Iterator[FakeModel]:
    with FakeModel() as model:
        yield model


@pytest.fixture(scope="session")
def gateway(
    openclaw: OpenClaw, fake_model: FakeModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with running_gateway(openclaw, tmp_path_factory.mktemp("openclaw"), fake_model) as gw:
        yield gw


STRICT_MAX_ATTEMPTS = 3


@pytest.fixture
def strict_gateway(
    openclaw: OpenClaw, fake_model: FakeModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway whose auth rate limit covers loopback: the 4th bad login locks everyone out."""
    home = tmp_path_factory.mktemp("openclaw-strict")
    with running_gateway(
        openclaw,
        home,
        fake_model,
        exempt_loopback=False,
        max_attempts=STRICT_MAX_ATTEMPTS,
        warm_up=False,  # the lockout test never gets as far as a turn
    ) as gw:
        yield gw


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "real OpenClaw timings")
        for line in TIMINGS:
            terminalreporter.write_line(line)
