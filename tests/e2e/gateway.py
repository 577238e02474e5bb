"""A real OpenClaw gateway for tests and benchmarks: installed from npm, started on loopback.

`install()` runs `scripts/install_openclaw.sh` (a no-op once the cache outside the repo is
complete; FLEETBOT_E2E_NODE and FLEETBOT_E2E_OPENCLAW override it). `running_gateway(...)`
writes an OpenClaw config into `home` — loopback only, a gateway token, hooks with their own
token, no network (no catalog refresh, update check, telemetry, heartbeat or dreaming), loop
detection on, its log in `home/logs`, the fake model as `fake/cheap` — starts `openclaw gateway
run` with the embedding preset of OpenClaw's docs, waits for /readyz, runs one warm-up turn and
stops it at the end (SIGTERM to its process group, then SIGKILL). Anything that goes wrong is a
`HarnessError` saying what and showing the gateway's log; pytest is not needed here.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e import protocol
from tests.e2e.fake_model import FakeModel, Reply

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "install_openclaw.sh"
READY_TIMEOUT = 90.0  # seconds; it takes 15-40 s on two cores
STOP_GRACE = 15.0
GATEWAY_TOKEN = "e2e-gateway-token-0123456789abcdef"
HOOKS_TOKEN = "e2e-hooks-token-fedcba9876543210"


class HarnessError(RuntimeError):
    """The gateway could not be installed, started or warmed up."""


@dataclass(frozen=True, slots=True)
class OpenClaw:
    """Where the install put things."""

    node: Path
    package: Path  # the openclaw package folder (holds openclaw.mjs)
    seconds: float = 0.0  # how long the install (or the check that it is complete) took


@dataclass(slots=True)
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
    timings: dict[str, float] = field(default_factory=dict)  # start-up steps, in seconds

    def log_tail(self, lines: int = 40) -> str:
        """The end of both logs, for error messages."""
        out = []
        for path in (self.stdout_path, self.log_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(out)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install() -> OpenClaw:
    """Run the install script and read where it put things (its `FLEETBOT_E2E_…=` lines)."""
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise HarnessError(
            f"{INSTALL_SCRIPT.name} failed (exit {done.returncode}); the real-OpenClaw suite "
            f"cannot run without it:\n{done.stdout}\n{done.stderr}"
        )
    found = dict(
        line.split("=", 1) for line in done.stdout.splitlines() if line.startswith("FLEETBOT_E2E_")
    )
    return OpenClaw(
        Path(found["FLEETBOT_E2E_NODE"]),
        Path(found["FLEETBOT_E2E_OPENCLAW"]),
        time.monotonic() - started,
    )


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
        # The gateway's defaults otherwise: no caller-chosen session keys on /hooks/agent.
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
    except (OSError, ValueError):  # not listening yet, or 503 while its sidecars start
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


def warm_up(gateway: Gateway) -> None:
    """One turn through the gateway: OpenClaw's first turn after a start sets up the agent's
    workspace and takes 10-25 s, which no test should pay for or measure."""
    tag = gateway.model.scenario(Reply("warm"))
    turn = protocol.run_turn(gateway.ws_url, gateway.token, f"warm-up {tag}")
    # In a thread of its own: its event loop never meets the caller's.
    with ThreadPoolExecutor(1) as pool:
        _, outcome = pool.submit(asyncio.run, turn).result(READY_TIMEOUT)
    if outcome["status"] != "ok":
        raise HarnessError(f"the warm-up turn failed: {outcome}\n{gateway.log_tail()}")


@contextmanager
def running_gateway(
    openclaw: OpenClaw,
    home: Path,
    model: FakeModel,
    *,
    exempt_loopback: bool = True,
    max_attempts: int = 10,
    warm: bool = True,
) -> Iterator[Gateway]:
    """A gateway in `home` on a free port, ready (and past its first turn, with `warm`);
    stopped when the block ends."""
    for sub in ("home", "state", "workspace", "logs"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = gateway_config(
        home, port, model, exempt_loopback=exempt_loopback, max_attempts=max_attempts
    )
    config_path = home / "openclaw.json"
    config_path.write_text(json.dumps(config, indent=2))
    gateway = Gateway(
        ws_url=f"ws://127.0.0.1:{port}",
        http_url=f"http://127.0.0.1:{port}",
        port=port,
        token=GATEWAY_TOKEN,
        hooks_token=HOOKS_TOKEN,
        model=model,
        log_path=home / "logs" / "openclaw.log",
        stdout_path=home / "logs" / "gateway.out",
        home=home,
    )
    command = [
        str(openclaw.node),
        str(openclaw.package / "openclaw.mjs"),
        *("gateway", "run", "--port", str(port), "--bind", "loopback"),
    ]
    started = time.monotonic()
    with gateway.stdout_path.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=gateway_env(openclaw, home, config_path),
            cwd=home,
            start_new_session=True,  # its own process group, stopped as one
        )
    try:
        while not _ready(f"{gateway.http_url}/readyz"):
            if proc.poll() is not None:
                raise HarnessError(
                    f"the OpenClaw gateway exited with {proc.returncode} while starting:\n"
                    + gateway.log_tail()
                )
            if time.monotonic() - started > READY_TIMEOUT:
                raise HarnessError(
                    f"the OpenClaw gateway was not ready within {READY_TIMEOUT:.0f} s:\n"
                    + gateway.log_tail()
                )
            time.sleep(0.25)
        gateway.timings["ready"] = time.monotonic() - started
        if warm:
            warm_up(gateway)
            gateway.timings["warm-up turn"] = time.monotonic() - started - gateway.timings["ready"]
        yield gateway
    finally:
        stopping = time.monotonic()
        _stop(proc)
        gateway.timings["stop"] = time.monotonic() - stopping
