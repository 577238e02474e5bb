"""Fixtures of the real-OpenClaw suite: the gateway from npm, on loopback, on a fake model.

`openclaw` installs it (scripts/install_openclaw.sh, or FLEETBOT_E2E_NODE and
FLEETBOT_E2E_OPENCLAW); a failed install fails the suite, it never skips it. `gateway` (one per
session) is a gateway on the session's `fake_model`, started and warmed up once; its handle
carries the URLs, both tokens, the fake model and the log paths. `strict_gateway` is a second
one, started only for the test that asks for it, whose auth rate limit also covers loopback and
locks out after `STRICT_MAX_ATTEMPTS` bad logins. See tests/e2e/gateway.py for the config.

These tests run only when asked for: `pytest -m e2e tests/e2e -p no:randomly`.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fake_model import FakeModel
from tests.e2e.gateway import Gateway, HarnessError, OpenClaw, install, running_gateway

E2E_TIMEOUT = 180  # seconds per test, fixture start-up included
STRICT_MAX_ATTEMPTS = 3

TIMINGS: list[str] = []  # printed at the end of the run


@pytest.fixture(scope="session")
def openclaw() -> OpenClaw:
    try:
        found = install()
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    TIMINGS.append(f"install (or its check): {found.seconds:.1f} s")
    return found


@pytest.fixture(scope="session")
def fake_model() -> Iterator[FakeModel]:
    with FakeModel() as model:
        yield model


def _gateway(
    name: str, openclaw: OpenClaw, home: Path, model: FakeModel, **kw: Any
) -> Iterator[Gateway]:
    started: Gateway | None = None
    try:
        with running_gateway(openclaw, home, model, **kw) as started:
            yield started
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        if started is not None:
            steps = ", ".join(f"{step} {secs:.1f} s" for step, secs in started.timings.items())
            TIMINGS.append(f"{name}: {steps}")


@pytest.fixture(scope="session")
def gateway(
    openclaw: OpenClaw, fake_model: FakeModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    yield from _gateway("gateway", openclaw, tmp_path_factory.mktemp("openclaw"), fake_model)


@pytest.fixture
def strict_gateway(
    openclaw: OpenClaw, fake_model: FakeModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway whose auth rate limit covers loopback: after STRICT_MAX_ATTEMPTS bad logins
    every login from here is locked out, the right token too."""
    yield from _gateway(
        "strict gateway",
        openclaw,
        tmp_path_factory.mktemp("openclaw-strict"),
        fake_model,
        exempt_loopback=False,
        max_attempts=STRICT_MAX_ATTEMPTS,
        warm=False,  # the lockout test never gets as far as a turn
    )


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect garbage after each test, so a socket left open fails the test that left it
    (filterwarnings = error), not whichever test the collector happens to run in."""
    yield
    gc.collect()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "real OpenClaw timings")
        for line in TIMINGS:
            terminalreporter.write_line(line)
