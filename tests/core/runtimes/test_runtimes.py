"""Runtimes against real parts: a loopback HTTP server, real subprocesses, a recording reporter."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.config import HttpRuntime, OpenClawRuntime, ProcessRuntime, SecretRef, SimulatedRuntime
from core.errors import (
    AgentBadReply,
    AgentBadStatus,
    AgentFailure,
    AgentTimeout,
    AgentUnreachable,
    ProcessFailed,
    RunNotActive,
)
from core.models import RunOutcome
from core.runtimes import (
    ACCEPTED,
    Dispatch,
    DispatchResult,
    HttpAgentRuntime,
    OpenClawGatewayRuntime,
    OpenClawHooksRuntime,
    ProcessAgentRuntime,
    SimulatedAgentRuntime,
    build_runtime,
)

TOKEN = "fbt-run-token-5f3a9c1e7d"


def make_job(*, deadline_in: float = 10.0, token_file: Path | None = None) -> Dispatch:
    return Dispatch(
        run_id="run-42",
        agent_id="dev-1",
        agent_name="Dev One",
        company_id="acme",
        issue={
            "id": "ACME-7",
            "title": "Fix the login page",
            "body": "It 500s on submit.",
            "status": "todo",
        },
        api_url="http://127.0.0.1:8080",
        token=TOKEN,
        token_file=token_file,
        model="glm-5.2-cloud",
        max_turns=12,
        skills=("issues.create",),
        deadline=time.time() + deadline_in,
    )


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class LoopbackServer:
    """A tiny HTTP/1.1 responder on 127.0.0.1 that records each request."""

    status: int = 202
    reply: bytes = b""
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.seen.append(Seen(method, path, headers, body))
            writer.write(
                f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(self.reply)}\r\n"
                "Content-Type: application/json\r\nConnection: close\r\n\r\n".encode()
                + self.reply
            )
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    srv = LoopbackServer()
    listener = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    srv.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        yield srv
    finally:
        listener.close()
        await listener.wait_closed()


def mock(handler: Callable[[httpx.Request], Any]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def http_config(url: str = "http://agent.test/wake", **kw: Any) -> HttpRuntime:
    return HttpRuntime(kind="http", url=url, **kw)


# --- http --------------------------------------------------------------------------------------


async def test_http_posts_the_wire_contract(server: LoopbackServer) -> None:
    cfg = http_config(
        f"{server.url}/wake",
        headers={"X-Team": "blue"},
        secret_headers={"X-Api-Key": SecretRef(env="AGENT_KEY")},
    )
    job = make_job()
    async with HttpAgentRuntime(cfg, {"AGENT_KEY": "k-123"}) as rt:
        assert await rt.dispatch(job) is ACCEPTED
    [req] = server.seen
    assert (req.method, req.path) == ("POST", "/wake")
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-team"] == "blue"
    assert req.headers["x-api-key"] == "k-123"
    assert req.json() == job.wire()
    assert set(req.json()) == {
        "run_id",
        "agent_id",
        "company_id",
        "issue",
        "api_url",
        "token",
        "model",
        "max_turns",
        "skills",
        "deadline",
    }


async def test_http_reads_a_verdict_from_a_real_server(server: LoopbackServer) -> None:
    server.status, server.reply = 200, b'{"status": "done", "summary": "Fixed it", "x": 1}'
    async with HttpAgentRuntime(http_config(server.url), {}) as rt:
        result = await rt.dispatch(make_job())
    assert result == DispatchResult(finished=True, outcome=RunOutcome.DONE, summary="Fixed it")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (204, b"", ACCEPTED),
        (202, b"  \n", ACCEPTED),
        (200, b'{"status": "accepted"}', ACCEPTED),
        (200, b'{"status": "done", "summary": "ok"}', DispatchResult(True, RunOutcome.DONE, "ok")),
        (200, b'{"status": "failed"}', DispatchResult(True, RunOutcome.FAILED, "")),
        (
            201,
            b'{"status": "blocked", "summary": "need creds"}',
            DispatchResult(True, RunOutcome.BLOCKED, "need creds"),
        ),
    ],
)
async def test_http_reply_statuses(status: int, body: bytes, expected: DispatchResult) -> None:
    async with HttpAgentRuntime(
        http_config(), {}, transport=mock(lambda _: httpx.Response(status, content=body))
    ) as rt:
        assert await rt.dispatch(make_job()) == expected


@pytest.mark.parametrize(
    ("handler", "error", "code", "words"),
    [
        (
            lambda _: httpx.Response(500, content=b"oops"),
            AgentBadStatus,
            "runtime_bad_status",
            "answered 500 Internal Server Error: oops",
        ),
        (
            lambda _: httpx.Response(302, headers={"Location": "https://u:p@else.test/x?k=1"}),
            AgentBadStatus,
            "runtime_bad_status",
            "pointing to https://else.test/x;",
        ),
        (
            lambda _: httpx.Response(200, content=b"<html>hi</html>"),
            AgentBadReply,
            "runtime_bad_reply",
            'answered 200 OK with a body that is not JSON ("<html>hi</html>")',
        ),
        (
            lambda _: httpx.Response(200, json={"state": "done"}),
            AgentBadReply,
            "runtime_bad_reply",
            "wrong shape",
        ),
        (
            lambda _: httpx.Response(200, json=["done"]),
            AgentBadReply,
            "runtime_bad_reply",
            "wrong shape",
        ),
        (
            lambda _: httpx.Response(200, json={"status": "finished"}),
            AgentBadReply,
            "runtime_bad_reply",
            "wrong shape",
        ),
    ],
)
async def test_http_faults(handler: Any, error: type[AgentFailure], code: str, words: str) -> None:
    async with HttpAgentRuntime(http_config(), {}, transport=mock(handler)) as rt:
        with pytest.raises(error) as info:
            await rt.dispatch(make_job())
    assert info.value.code == code
    assert words in str(info.value)


async def test_http_bad_reply_excerpt_is_short_sanitized_and_secret_free() -> None:
    body = ("\x1b[31mtoken=" + TOKEN + " key=k-9\n" + "x" * 5000).encode()
    cfg = http_config(secret_headers={"X-Key": SecretRef(env="K")})
    transport = mock(lambda _: httpx.Response(200, content=body))
    async with HttpAgentRuntime(cfg, {"K": "k-9"}, transport=transport) as rt:
        with pytest.raises(AgentBadReply) as info:
            await rt.dispatch(make_job())
    msg = str(info.value)
    quoted = msg.split('("', 1)[1].split('")', 1)[0]
    assert len(quoted) <= 200
    assert quoted.startswith("[31mtoken=[redacted] key=[redacted] xxx")
    assert TOKEN not in msg and "k-9" not in msg and "\x1b" not in msg and "\n" not in msg


async def test_http_messages_hide_url_credentials_and_echoed_tokens() -> None:
    cfg = http_config("http://bob:hunter2@agent.test:8000/wake?sig=abc")
    transport = mock(lambda req: httpx.Response(500, content=b"bad token " + TOKEN.encode()))
    async with HttpAgentRuntime(cfg, {}, transport=transport) as rt:
        with pytest.raises(AgentBadStatus) as info:
            await rt.dispatch(make_job())
    msg = str(info.value)
    assert msg.startswith("agent at http://agent.test:8000/wake answered 500")
    assert "hunter2" not in msg and "bob" not in msg and "sig=abc" not in msg
    assert TOKEN not in msg and "[redacted]" in msg


async def test_http_real_refused_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with HttpAgentRuntime(http_config(f"http://127.0.0.1:{port}/"), {}) as rt:
        with pytest.raises(
            AgentUnreachable, match=f"cannot reach agent at http://127.0.0.1:{port}/"
        ):
            # Refused is retried inside the deadline: one this near allows no second try.
            await rt.dispatch(make_job(deadline_in=0.4))


async def test_http_timeout_is_capped_by_the_deadline() -> None:
    async def stall(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(204)

    async with HttpAgentRuntime(http_config(timeout="30s"), {}, transport=mock(stall)) as rt:
        started = time.monotonic()
        with pytest.raises(AgentTimeout, match=r"within 0\.[0-9] s"):
            await rt.dispatch(make_job(deadline_in=0.3))
    assert time.monotonic() - started < 1.5


async def test_http_past_deadline_sends_nothing() -> None:
    calls: list[httpx.Request] = []
    transport = mock(lambda req: calls.append(req) or httpx.Response(204))
    async with HttpAgentRuntime(http_config(), {}, transport=transport) as rt:
        with pytest.raises(AgentTimeout, match="reached its deadline"):
            await rt.dispatch(make_job(deadline_in=-1))
    assert calls == []


async def test_http_missing_secret_header_names_its_source(tmp_path: Path) -> None:
    cfg = http_config(secret_headers={"X-Api-Key": SecretRef(env="AGENT_KEY")})
    async with HttpAgentRuntime(cfg, {"AGENT_KEY": ""}) as rt:
        with pytest.raises(AgentFailure, match="env var AGENT_KEY") as info:
            await rt.dispatch(make_job())
    assert info.value.code == "runtime_secret_missing"
    cfg = http_config(secret_headers={"X-Api-Key": SecretRef(file=tmp_path / "nope")})
    async with HttpAgentRuntime(cfg, {}) as rt:
        with pytest.raises(AgentFailure, match=f"file {tmp_path / 'nope'}"):
            await rt.dispatch(make_job())


async def test_http_aclose_is_idempotent_and_final() -> None:
    rt = HttpAgentRuntime(http_config(), {}, transport=mock(lambda _: httpx.Response(204)))
    await rt.aclose()
    await rt.aclose()
    with pytest.raises(AgentFailure, match="closed"):
        await rt.dispatch(make_job())


# --- openclaw: hooks in test_openclaw_hooks.py --------------------------------------------------


def claw_config(url: str = "http://gw.test", **kw: Any) -> OpenClawRuntime:
    kw.setdefault("token_env", "OPENCLAW_TOKEN")
    return OpenClawRuntime(kind="openclaw", url=url, **kw)


# --- process -----------------------------------------------------------------------------------

BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "SECRET_X": "nope"}


def py(code: str, *args: str, **kw: Any) -> ProcessRuntime:
    return ProcessRuntime(kind="process", command=[sys.executable, "-c", code, *args], **kw)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie is dead, only not yet reaped


async def wait_for_pid(path: Path) -> int:
    """Poll for the pid a child writes once it is up (a few ms of blocking reads is fine here)."""
    for _ in range(200):
        text = path.read_text() if path.exists() else ""  # noqa: ASYNC240
        if text.strip():
            return int(text)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


async def test_process_exit_zero_finishes_the_run() -> None:
    async with ProcessAgentRuntime(py("print('hi')"), BASE_ENV) as rt:
        assert await rt.dispatch(make_job()) == DispatchResult(
            finished=True,
            summary="hi",
            reason="the process exited 0 without calling finish; its last output is the summary",
            reason_code="exited",
        )


async def test_process_exit_code_and_last_stderr_line() -> None:
    code = "import sys; sys.stderr.write('warming up\\nboom: no inbox\\n\\n'); sys.exit(3)"
    async with ProcessAgentRuntime(py(code), BASE_ENV) as rt:
        with pytest.raises(ProcessFailed) as info:
            await rt.dispatch(make_job())
    assert info.value.code == "process_failed"
    assert str(info.value) == f"process {sys.executable} exited with code 3: boom: no inbox"


async def test_process_killed_by_a_signal() -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    async with ProcessAgentRuntime(py(code), BASE_ENV) as rt:
        with pytest.raises(ProcessFailed, match="was killed by SIGKILL: \\(nothing on stderr\\)"):
            await rt.dispatch(make_job())


async def test_process_environment(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    code = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"
    cfg = py(code, str(out), env={"AGENT_MODE": "fast"}, cwd=tmp_path)
    job = make_job(token_file=tmp_path / "t.token")
    async with ProcessAgentRuntime(cfg, BASE_ENV) as rt:
        await rt.dispatch(job)
    env = json.loads(out.read_text())
    assert {k: env[k] for k in env if k.startswith("FLEETBOT_")} == {
        "FLEETBOT_API_URL": "http://127.0.0.1:8080",
        "FLEETBOT_RUN_ID": "run-42",
        "FLEETBOT_AGENT_ID": "dev-1",
        "FLEETBOT_ISSUE_ID": "ACME-7",
        "FLEETBOT_TOKEN": TOKEN,
        "FLEETBOT_MODEL": "glm-5.2-cloud",
        "FLEETBOT_MAX_TURNS": "12",
        "FLEETBOT_DEADLINE": str(job.deadline),
        "FLEETBOT_WAKE_REASON": "heartbeat",
        "FLEETBOT_WAKE_NOTE": "",
    }
    assert (env["PATH"], env["HOME"], env["LANG"], env["AGENT_MODE"]) == (
        "/usr/bin:/bin",
        "/tmp",
        "C.UTF-8",
        "fast",
    )
    assert "SECRET_X" not in env


async def test_process_sigterm_ignored_means_sigkill_for_the_whole_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    code = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "open(sys.argv[1], 'w').write(f'{os.getpid()} {kid.pid}')\n"
        "time.sleep(30)\n"
    )
    async with ProcessAgentRuntime(py(code, str(pids), kill_grace="200ms"), BASE_ENV) as rt:
        started = time.monotonic()
        with pytest.raises(AgentTimeout) as info:
            await rt.dispatch(make_job(deadline_in=1.5))
    assert time.monotonic() - started < 3.5
    assert "still running at its deadline; sent SIGTERM, then SIGKILL" in str(info.value)
    assert info.value.code == "runtime_timeout"
    child, grandchild = map(int, pids.read_text().split())
    # SIGKILL is delivered at once, but the kernel may take a moment to tear a process down
    # on a loaded machine: allow it that moment, not more.
    for _ in range(100):
        if not alive(child) and not alive(grandchild):
            break
        await asyncio.sleep(0.02)
    assert not alive(child) and not alive(grandchild)


async def test_process_command_not_found_or_not_executable(tmp_path: Path) -> None:
    cfg = ProcessRuntime(kind="process", command=["fleetbot-agent-nowhere"])
    async with ProcessAgentRuntime(cfg, BASE_ENV) as rt:
        with pytest.raises(ProcessFailed, match=r"fleetbot-agent-nowhere was not found.*full path"):
            await rt.dispatch(make_job())
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    cfg = ProcessRuntime(kind="process", command=[str(script)])
    async with ProcessAgentRuntime(cfg, BASE_ENV) as rt:
        with pytest.raises(ProcessFailed, match="is not executable; run `chmod \\+x`"):
            await rt.dispatch(make_job())


async def test_process_chatty_child_does_not_deadlock() -> None:
    code = (
        "import sys\n"
        "for _ in range(1024): sys.stdout.write('o' * 1023 + '\\n'); sys.stderr.write('e' * 1024)\n"
        "sys.stderr.write('\\nlast words\\n'); sys.exit(1)\n"
    )
    async with ProcessAgentRuntime(py(code), BASE_ENV) as rt:
        with pytest.raises(ProcessFailed, match=r"exited with code 1: last words$"):
            await asyncio.wait_for(rt.dispatch(make_job(deadline_in=5)), 4)


async def test_process_cancellation_kills_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(30)\n"
    )
    async with ProcessAgentRuntime(py(code, str(pid_file), kill_grace="200ms"), BASE_ENV) as rt:
        task = asyncio.create_task(rt.dispatch(make_job()))
        pid = await wait_for_pid(pid_file)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not alive(pid)


async def test_process_aclose_stops_live_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(30)"
    rt = ProcessAgentRuntime(py(code, str(pid_file), kill_grace="200ms"), BASE_ENV)
    task = asyncio.create_task(rt.dispatch(make_job()))
    pid = await wait_for_pid(pid_file)
    await rt.aclose()
    await rt.aclose()
    with pytest.raises(AgentFailure, match="shutting down"):
        await task
    assert not alive(pid)


async def test_process_token_is_redacted_from_the_error() -> None:
    code = (
        "import os, sys\n"
        "print('refused token', os.environ['FLEETBOT_TOKEN'], file=sys.stderr)\n"
        "sys.exit(2)\n"
    )
    async with ProcessAgentRuntime(py(code), BASE_ENV) as rt:
        with pytest.raises(ProcessFailed) as info:
            await rt.dispatch(make_job())
    assert TOKEN not in str(info.value)
    assert str(info.value).endswith("exited with code 2: refused token [redacted]")


# --- simulated ---------------------------------------------------------------------------------


@dataclass
class RecordingReporter:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    refuse: bool = False

    async def report_usage(self, *args: Any, **kw: Any) -> object:
        self.calls.append(("usage", args, kw))
        if self.refuse:
            raise RunNotActive("run run-42 already ended")
        return None

    async def finish_run(self, *args: Any, **kw: Any) -> object:
        self.calls.append(("finish", args, kw))
        return None


def sim(**kw: Any) -> SimulatedRuntime:
    return SimulatedRuntime(kind="simulated", **kw)


async def no_sleep(_: float) -> None:
    return None


async def test_simulated_success_reports_like_a_real_agent() -> None:
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    reporter = RecordingReporter()
    rt = SimulatedAgentRuntime(
        sim(latency="500ms", turns=4, cost_per_turn=0.01, seed=1), reporter, sleep=record_sleep
    )
    result = await rt.dispatch(make_job())
    summary = "Worked on ACME-7: Fix the login page"
    assert result == DispatchResult(finished=True, outcome=RunOutcome.DONE, summary=summary)
    assert slept == [0.5]
    (kind, args, kw), finish = reporter.calls
    assert (kind, args) == ("usage", ("run-42", "dev-1"))
    assert kw["turns"] == 4 and kw["cost"] == pytest.approx(0.04) and kw["model"] == "glm-5.2-cloud"
    assert kw["input_tokens"] > 0 and kw["output_tokens"] > 0
    assert finish == ("finish", ("run-42", "dev-1", RunOutcome.DONE), {"summary": summary})


async def test_simulated_unauthorized_and_failure() -> None:
    rt = SimulatedAgentRuntime(sim(unauthorized_rate=1.0), RecordingReporter(), sleep=no_sleep)
    with pytest.raises(AgentBadStatus, match="refused with 401") as info:
        await rt.dispatch(make_job())
    assert info.value.code == "agent_unauthorized"
    reporter = RecordingReporter()
    rt = SimulatedAgentRuntime(sim(failure_rate=1.0), reporter, sleep=no_sleep)
    with pytest.raises(AgentFailure, match="simulated failure") as failed:
        await rt.dispatch(make_job())
    assert failed.value.code == "runtime_failed" and reporter.calls == []


async def test_simulated_blocked_finishes_with_blocked_outcome() -> None:
    reporter = RecordingReporter()
    rt = SimulatedAgentRuntime(sim(blocked_rate=1.0), reporter, sleep=no_sleep)
    result = await rt.dispatch(make_job())
    assert result.finished and result.outcome is RunOutcome.BLOCKED
    assert "needs a decision" in result.summary
    assert reporter.calls[-1][1][2] is RunOutcome.BLOCKED


async def test_simulated_hang_waits_until_cancelled() -> None:
    rt = SimulatedAgentRuntime(sim(hang_rate=1.0), RecordingReporter(), sleep=no_sleep)
    task = asyncio.create_task(rt.dispatch(make_job()))
    await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_simulated_reporter_refusal_ends_quietly() -> None:
    rt = SimulatedAgentRuntime(sim(), RecordingReporter(refuse=True), sleep=no_sleep)
    assert await rt.dispatch(make_job()) == DispatchResult(finished=True)


async def outcomes(rt: SimulatedAgentRuntime, n: int) -> list[str]:
    seen = []
    for _ in range(n):
        try:
            await rt.dispatch(make_job())
            seen.append("done")
        except AgentFailure as exc:
            seen.append(exc.code)
    return seen


async def test_simulated_dice_are_seeded_and_follow_the_rates() -> None:
    cfg = sim(failure_rate=0.3, unauthorized_rate=0.2, seed=7)
    first = await outcomes(SimulatedAgentRuntime(cfg, RecordingReporter(), sleep=no_sleep), 400)
    again = await outcomes(SimulatedAgentRuntime(cfg, RecordingReporter(), sleep=no_sleep), 400)
    assert first == again
    assert 0.22 < first.count("runtime_failed") / 400 < 0.38
    assert 0.13 < first.count("agent_unauthorized") / 400 < 0.27
    injected = SimulatedAgentRuntime(
        sim(failure_rate=0.3, unauthorized_rate=0.2, seed=99),
        RecordingReporter(),
        rng=random.Random(7),
        sleep=no_sleep,
    )
    assert await outcomes(injected, 400) == first


# --- build_runtime -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "cls"),
    [
        (http_config(), HttpAgentRuntime),
        (claw_config(), OpenClawGatewayRuntime),
        (claw_config(transport="hooks"), OpenClawHooksRuntime),
        (ProcessRuntime(kind="process", command=["true"]), ProcessAgentRuntime),
        (sim(), SimulatedAgentRuntime),
    ],
)
async def test_build_runtime_by_kind(config: Any, cls: type[Any]) -> None:
    rt = build_runtime(config, {}, RecordingReporter())
    try:
        assert isinstance(rt, cls) and rt.kind == config.kind
    finally:
        await rt.aclose()


@pytest.mark.parametrize(
    "config",
    [
        http_config(),
        claw_config(),
        claw_config(transport="hooks"),
        ProcessRuntime(kind="process", command=["true"]),
        sim(),
    ],
    ids=["http", "openclaw-gateway", "openclaw-hooks", "process", "simulated"],
)
async def test_every_kind_is_closed_once_by_its_context(config: Any) -> None:
    async with build_runtime(config, {}, RecordingReporter()) as rt:
        assert not rt.closed
    assert rt.closed
    await rt.aclose()  # again: nothing left to release, no error
    if config.kind != "simulated":  # it owns nothing, so it has nothing to refuse with
        with pytest.raises(AgentFailure, match=f"the {config.kind} runtime was closed"):
            await rt.dispatch(make_job())
