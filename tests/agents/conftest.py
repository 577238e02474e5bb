"""Fixtures of the real-CLI agent suite: Claude Code and Codex from npm, on fake model servers.

`agent_clis` runs scripts/install_agent_clis.sh once per session (or takes FLEETBOT_E2E_CLAUDE
and FLEETBOT_E2E_CODEX, which the script honours); a failed install fails the suite, it never
skips it. Each test then runs a whole fleetbot (store, auth, scheduler, the agent API on a
loopback port) whose agent is a `process` preset on the real CLI, pointed at a fake model.

These tests run only when asked for: `pytest -m e2e tests/agents -p no:randomly`.
"""

from __future__ import annotations

import gc
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "install_agent_clis.sh"
E2E_TIMEOUT = 120  # seconds per test, the install (or its check) included

TIMINGS: list[str] = []  # printed at the end of the run


@dataclass(frozen=True, slots=True)
class AgentClis:
    claude: Path
    codex: Path
    versions: str
    seconds: float


@pytest.fixture(scope="session")
def agent_clis() -> AgentClis:
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            f"{INSTALL_SCRIPT.name} failed (exit {done.returncode}); the real-CLI agent suite "
            f"cannot run without it:\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    lines = done.stdout.splitlines()
    found = dict(line.split("=", 1) for line in lines if line.startswith("FLEETBOT_E2E_"))
    seconds = time.monotonic() - started
    versions = "; ".join(
        line for line in lines if not line.startswith(("FLEETBOT_E2E_", "install"))
    )
    TIMINGS.append(f"install (or its check): {seconds:.1f} s ({versions})")
    return AgentClis(
        Path(found["FLEETBOT_E2E_CLAUDE"]), Path(found["FLEETBOT_E2E_CODEX"]), versions, seconds
    )


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect garbage after each test, so a socket left open fails the test that left it
    (filterwarnings = error), not whichever test the collector happens to run in."""
    yield
    gc.collect()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "real agent CLI timings")
        for line in TIMINGS:
            terminalreporter.write_line(line)
