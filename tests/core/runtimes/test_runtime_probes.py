"""Self-tests that start no turn: an http agent answers at all, a process command is there."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from runtime_fakes import Loopback, Seen, serving

from core.config import HttpRuntime, ProcessRuntime, SecretRef
from core.runtimes.http import HttpAgentRuntime
from core.runtimes.process import ProcessAgentRuntime

BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    async with serving() as srv:
        yield srv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- http --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 204, 401, 404, 405, 500])
async def test_http_any_answer_means_reachable(loopback: Loopback, status: int) -> None:
    async def answer(_: Seen) -> tuple[int, dict[str, str], bytes]:
        return status, {}, b""

    loopback.answer = answer
    cfg = HttpRuntime(kind="http", url=f"{loopback.url}/wake")
    async with HttpAgentRuntime(cfg, {}) as rt:
        probe = await rt.probe("dev-1")
    assert probe.ok and probe.target == f"the agent at {loopback.url}/wake"
    [req] = loopback.seen
    assert (req.method, req.path) == ("GET", "/wake")


async def test_http_refused_is_unreachable() -> None:
    port = free_port()
    cfg = HttpRuntime(kind="http", url=f"http://bob:hunter2@127.0.0.1:{port}/wake?sig=abc")
    async with HttpAgentRuntime(cfg, {}) as rt:
        probe = await rt.probe("dev-1")
    assert (probe.ok, probe.code) == (False, "runtime_unreachable")
    assert probe.target == f"the agent at http://127.0.0.1:{port}/wake"
    assert probe.problem.startswith(f"cannot reach the agent at http://127.0.0.1:{port}/wake (")
    assert "reachable from this host" in probe.fix
    assert "hunter2" not in probe.problem + probe.target and "sig=abc" not in probe.problem


async def test_http_silence_within_the_timeout_is_unreachable() -> None:
    async def stall(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(204)

    cfg = HttpRuntime(kind="http", url="http://agent.test/wake", timeout="100ms")
    async with HttpAgentRuntime(cfg, {}, transport=httpx.MockTransport(stall)) as rt:
        probe = await rt.probe("dev-1")
    assert (probe.ok, probe.code) == (False, "runtime_unreachable")
    assert probe.problem == "the agent at http://agent.test/wake did not answer within 0.1 s"


async def test_http_dns_failure_is_unreachable() -> None:
    def no_such_host(_: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -2] Name or service not known")

    cfg = HttpRuntime(kind="http", url="http://agent.invalid/wake")
    async with HttpAgentRuntime(cfg, {}, transport=httpx.MockTransport(no_such_host)) as rt:
        probe = await rt.probe("dev-1")
    assert (probe.ok, probe.code) == (False, "runtime_unreachable")
    assert probe.problem == (
        "cannot reach the agent at http://agent.invalid/wake ([Errno -2] Name or service not known)"
    )


async def test_http_missing_secret_header() -> None:
    cfg = HttpRuntime(
        kind="http", url="http://agent.test/", secret_headers={"X-Key": SecretRef(env="K")}
    )
    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(204))
    async with HttpAgentRuntime(cfg, {}, transport=transport) as rt:
        probe = await rt.probe("dev-1")
    assert (probe.ok, probe.code) == (False, "runtime_secret_missing")
    assert probe.fix == "Put it in env var K." and seen == []


# --- process -----------------------------------------------------------------------------------


def process(command: list[str], **kw: object) -> ProcessAgentRuntime:
    return ProcessAgentRuntime(ProcessRuntime(kind="process", command=command, **kw), BASE_ENV)


def script(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


async def test_process_found_by_full_path_or_on_path(tmp_path: Path) -> None:
    assert (await process([sys.executable, "-V"]).probe("dev-1")).ok
    assert (await process(["sh", "-c", "true"]).probe("dev-1")).ok  # on the child's PATH
    mine = script(tmp_path / "bin" / "my-agent")
    # The runtime's own env sets the child's PATH, and so where a bare name is found.
    found = process(["my-agent"], env={"PATH": str(mine.parent)})
    assert (await found.probe("dev-1")).ok
    # A relative path is found inside cwd, as exec will find it.
    assert (await process(["./bin/my-agent"], cwd=tmp_path).probe("dev-1")).ok


async def test_process_missing_command(tmp_path: Path) -> None:
    probe = await process(["fleetbot-agent-nowhere"]).probe("dev-1")
    assert (probe.ok, probe.code) == (False, "runtime_missing")
    assert probe.problem == "fleetbot-agent-nowhere was not found on the PATH the process gets"
    assert "full path as the first item of `command`" in probe.fix
    probe = await process([str(tmp_path / "nope")]).probe("dev-1")
    assert probe.problem == f"{tmp_path / 'nope'} was not found"


async def test_process_not_executable(tmp_path: Path) -> None:
    plain = script(tmp_path / "agent.sh", mode=0o644)
    probe = await process([str(plain)]).probe("dev-1")
    assert (probe.ok, probe.code) == (False, "runtime_missing")
    assert probe.problem == f"{plain} is not executable" and "chmod +x" in probe.fix


async def test_process_missing_cwd(tmp_path: Path) -> None:
    probe = await process(["sh"], cwd=tmp_path / "gone").probe("dev-1")
    assert (probe.ok, probe.code) == (False, "runtime_missing")
    assert probe.problem == f"its working directory {tmp_path / 'gone'} does not exist"
    assert "fix `cwd`" in probe.fix
