"""The openclaw runtime over `/hooks/agent`, against a loopback stand-in that behaves as
openclaw@2026.9.6 did in the lab (NOTES §5.7, §5.9): the POST waits for the turn, the same
Idempotency-Key and body replay the same runId without a second turn, 401 for a wrong token,
429 with Retry-After once locked out, 400 for an empty body."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from runtime_fakes import TOKEN, Accepted, FakeTime, Loopback, Seen, job, serving

from core.config import OpenClawRuntime
from core.errors import AgentBadReply, AgentBadStatus, AgentFailure, AgentUnreachable
from core.runtimes.base import ACCEPTED, DispatchResult
from core.runtimes.openclaw.hooks import ENDED_WELL, OpenClawHooksRuntime
from core.runtimes.wake import wake_message

HOOKS = "hooks-secret-0b8e2d4c6a"
ENV = {"OPENCLAW_HOOKS_TOKEN": HOOKS}
Reply = tuple[int, dict[str, str], bytes]


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    async with serving() as srv:
        yield srv


def hooks_config(url: str = "http://gw.test", **kw: Any) -> OpenClawRuntime:
    kw.setdefault("token_env", "OPENCLAW_HOOKS_TOKEN")
    return OpenClawRuntime(kind="openclaw", transport="hooks", url=url, **kw)


def reply(status: int, data: Any = None, **headers: str) -> Reply:
    body = json.dumps(data).encode() if data is not None else b""
    return status, {"Content-Type": "application/json", **headers}, body


@dataclass
class Gateway:
    """What the gateway does with /hooks/agent: one turn per idempotency key and body; a
    replay waits for that turn's completion. `drop_first` loses the first answer (as a proxy
    cutting an idle connection would), `turn_seconds` is how long a turn takes."""

    completion: str | None = "ok"  # None: admission only, as a hooks mapping answers
    turn_seconds: float = 0.0
    drop_first: bool = False
    turns: dict[tuple[str, bytes], str] = field(default_factory=dict)

    async def __call__(self, seen: Seen) -> Reply | None:
        if seen.headers.get("authorization") != f"Bearer {HOOKS}":
            return 401, {"Content-Type": "text/plain"}, b"Unauthorized"
        data = seen.json()
        if not data.get("message"):
            return reply(400, {"ok": False, "error": "message required"})
        key = (seen.headers.get("idempotency-key", ""), seen.body)
        run_id = self.turns.setdefault(key, f"oc-run-{len(self.turns) + 1}")
        await asyncio.sleep(self.turn_seconds)
        if self.drop_first:
            self.drop_first = False
            return None
        answer: dict[str, Any] = {"ok": True, "runId": run_id}
        if self.completion is not None:
            shown = "visible" if self.completion == "ok" else "empty"
            answer["completion"] = {"status": self.completion, "replyDisposition": shown}
        return reply(200, answer)


@pytest.fixture
def gateway(loopback: Loopback) -> Gateway:
    gw = Gateway()
    loopback.answer = gw
    return gw


async def test_hooks_post_the_contract_and_a_turn_that_ended_well_goes_to_review(
    loopback: Loopback, gateway: Gateway
) -> None:
    accepted = Accepted()
    run = job(deadline_in=600, on_accepted=accepted, wake_reason="assigned")
    async with OpenClawHooksRuntime(hooks_config(loopback.url + "/"), ENV) as rt:
        result = await rt.dispatch(run)
    assert result == DispatchResult(
        finished=True, external_id="oc-run-1", reason=ENDED_WELL, reason_code="turn_ended"
    )
    assert "work goes to review" in result.reason
    assert accepted.ids == ["oc-run-1"]
    [req] = loopback.seen
    assert (req.method, req.path) == ("POST", "/hooks/agent")
    assert req.headers["authorization"] == f"Bearer {HOOKS}"
    assert req.headers["idempotency-key"] == "run-42"
    assert req.headers["content-type"] == "application/json"
    body = req.json()
    # No sessionKey, even with `session: issue`: OpenClaw refuses it on hooks by default.
    assert set(body) == {
        "message",
        "name",
        "agentId",
        "deliver",
        "waitForCompletion",
        "idempotencyKey",
        "timeoutSeconds",
    }
    assert body["message"] == wake_message(run)
    assert body["agentId"] == "dev-1" and body["name"] == "Dev One"
    assert body["deliver"] is False and body["waitForCompletion"] is True
    assert body["idempotencyKey"] == "run-42"
    assert isinstance(body["timeoutSeconds"], int) and 590 <= body["timeoutSeconds"] <= 600


async def test_ws_url_agent_id_and_hook_path(loopback: Loopback, gateway: Gateway) -> None:
    url = loopback.url.replace("http://", "ws://")
    cfg = hooks_config(url, agent_id="main", hook_path="/hooks/agent")
    async with OpenClawHooksRuntime(cfg, ENV) as rt:
        assert (await rt.dispatch(job())).finished
    assert loopback.seen[0].json()["agentId"] == "main"
    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(
        lambda r: seen.append(r) or httpx.Response(200, json={"ok": True, "runId": "r-9"})
    )
    cfg = hooks_config("wss://gw.test:8443/", hook_path="/hooks/fleetbot-trusted")
    async with OpenClawHooksRuntime(cfg, ENV, transport=transport) as rt:
        await rt.dispatch(job())
    assert str(seen[0].url) == "https://gw.test:8443/hooks/fleetbot-trusted"


async def test_a_mapping_that_only_admits_hands_the_run_over(
    loopback: Loopback, gateway: Gateway
) -> None:
    gateway.completion = None
    accepted = Accepted()
    cfg = hooks_config(loopback.url, hook_path="/hooks/fleetbot-trusted")
    async with OpenClawHooksRuntime(cfg, ENV) as rt:
        assert await rt.dispatch(job(on_accepted=accepted)) is ACCEPTED
    assert accepted.ids == ["oc-run-1"] and loopback.seen[0].path == "/hooks/fleetbot-trusted"


async def test_a_failed_turn_fails_the_run_with_the_gateways_status(
    loopback: Loopback, gateway: Gateway
) -> None:
    gateway.completion = "error"
    accepted = Accepted()
    async with OpenClawHooksRuntime(hooks_config(loopback.url), ENV) as rt:
        with pytest.raises(AgentFailure) as info:
            await rt.dispatch(job(on_accepted=accepted))
    assert info.value.code == "turn_failed"
    assert "its turn oc-run-1 ended with status 'error' (reply: empty)" in str(info.value)
    assert accepted.ids == ["oc-run-1"]  # the run card still shows which turn it was


async def test_a_late_answer_is_waited_for_not_retried(
    loopback: Loopback, gateway: Gateway
) -> None:
    """The answer comes after `timeout` (the turn takes that long): one request, one turn."""
    gateway.turn_seconds = 0.2
    async with OpenClawHooksRuntime(hooks_config(loopback.url, timeout="50ms"), ENV) as rt:
        result = await rt.dispatch(job(deadline_in=5))
    assert result.finished and result.external_id == "oc-run-1"
    assert len(loopback.seen) == 1 and len(gateway.turns) == 1


async def test_a_lost_answer_is_retried_and_the_gateway_runs_one_turn(
    loopback: Loopback, gateway: Gateway
) -> None:
    """The connection drops before the answer; the identical retry replays the same turn."""
    gateway.drop_first = True
    accepted = Accepted()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async with OpenClawHooksRuntime(hooks_config(loopback.url), ENV, sleep=sleep) as rt:
        result = await rt.dispatch(job(on_accepted=accepted))
    first, second = loopback.seen
    assert first.body == second.body
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == "run-42"
    assert len(gateway.turns) == 1  # exactly one turn
    assert result.external_id == "oc-run-1" and accepted.ids == ["oc-run-1"]
    assert slept == [0.5]


async def test_transient_answers_are_retried_byte_identical(fake_time: FakeTime) -> None:
    """Time passes between attempts; timeoutSeconds was computed once, so the bytes match."""
    answers = iter(
        [
            httpx.Response(503),
            httpx.ConnectError("[Errno 111] Connection refused"),
            httpx.ReadTimeout("the answer was lost"),
            httpx.Response(200, json={"ok": True, "runId": "oc-7", "completion": {"status": "ok"}}),
        ]
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = next(answers)
        if isinstance(step, Exception):
            raise step
        return step

    rt = OpenClawHooksRuntime(
        hooks_config(),
        ENV,
        transport=httpx.MockTransport(handler),
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )
    async with rt:
        result = await rt.dispatch(job(deadline=fake_time.now + 120))
    assert result.external_id == "oc-7" and fake_time.slept == [0.5, 1.0, 2.0]
    assert len({r.content for r in seen}) == 1 and len(seen) == 4
    assert {r.headers["idempotency-key"] for r in seen} == {"run-42"}


async def test_a_down_gateway_is_retried_until_the_deadline_is_near(fake_time: FakeTime) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = hooks_config(f"http://127.0.0.1:{port}")
    async with OpenClawHooksRuntime(cfg, ENV, clock=fake_time.clock, sleep=fake_time.sleep) as rt:
        with pytest.raises(AgentUnreachable) as info:
            await rt.dispatch(job(deadline=fake_time.now + 3))
    assert fake_time.slept == [0.5, 1.0]
    assert str(info.value).startswith(
        f"cannot reach the OpenClaw gateway at http://127.0.0.1:{port}"
    )
    assert "tried 3 times" in str(info.value)


async def test_a_lockout_is_reported_pointing_at_the_token(fake_time: FakeTime) -> None:
    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(
        lambda r: (
            seen.append(r)
            or httpx.Response(429, headers={"Retry-After": "60"}, text="Too Many Requests")
        )
    )
    rt = OpenClawHooksRuntime(
        hooks_config(), ENV, transport=transport, clock=fake_time.clock, sleep=fake_time.sleep
    )
    async with rt:
        with pytest.raises(AgentBadStatus) as info:
            await rt.dispatch(job(deadline=fake_time.now + 600))
    assert len(seen) == 1 and fake_time.slept == []  # not retried: that would extend it
    msg = str(info.value)
    assert info.value.code == "runtime_locked_out"
    assert "locked fleetbot out after repeated bad logins" in msg
    assert "Retry-After: 60 s" in msg
    assert "fix the hooks token in env var OPENCLAW_HOOKS_TOKEN" in msg
    assert HOOKS not in msg


async def test_a_wrong_token_is_runtime_auth(loopback: Loopback, gateway: Gateway) -> None:
    env = {"OPENCLAW_HOOKS_TOKEN": "the-gateway-token"}
    async with OpenClawHooksRuntime(hooks_config(loopback.url), env) as rt:
        with pytest.raises(AgentBadStatus) as info:
            await rt.dispatch(job())
    msg = str(info.value)
    assert info.value.code == "runtime_auth" and len(loopback.seen) == 1
    assert "answered 401 Unauthorized: the hooks token was refused" in msg
    assert "env var OPENCLAW_HOOKS_TOKEN holds the gateway's hooks.token" in msg
    assert "the-gateway-token" not in msg


@pytest.mark.parametrize(
    ("answer", "error", "code", "words"),
    [
        (
            httpx.Response(400, json={"ok": False, "error": 'unknown agentId "nope"'}),
            AgentBadStatus,
            "agent_unknown",
            "hooks.allowedAgentIds",
        ),
        (
            httpx.Response(400, json={"ok": False, "error": "waitForCompletion must be boolean"}),
            AgentBadStatus,
            "runtime_bad_status",
            "refused the hook as a bad request",
        ),
        (
            httpx.Response(404, text="Not Found"),
            AgentBadStatus,
            "runtime_bad_status",
            "fix `hook_path`",
        ),
        (
            httpx.Response(200, json={"ok": False, "error": "agent not allowed"}),
            AgentBadReply,
            "runtime_bad_reply",
            "refused the hook",
        ),
        (
            httpx.Response(500, text="boom " + HOOKS),
            AgentBadStatus,
            "runtime_bad_status",
            "answered 500 Internal Server Error: boom [redacted]",
        ),
    ],
)
async def test_refusals(
    answer: httpx.Response, error: type[AgentFailure], code: str, words: str
) -> None:
    transport = httpx.MockTransport(lambda _: answer)
    async with OpenClawHooksRuntime(hooks_config(), ENV, transport=transport) as rt:
        with pytest.raises(error) as info:
            await rt.dispatch(job())
    assert info.value.code == code and words in str(info.value)
    assert HOOKS not in str(info.value) and TOKEN not in str(info.value)


async def test_missing_hooks_token_sends_nothing(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200))
    async with OpenClawHooksRuntime(hooks_config(), {}, transport=transport) as rt:
        with pytest.raises(AgentFailure, match="env var OPENCLAW_HOOKS_TOKEN") as info:
            await rt.dispatch(job())
    assert info.value.code == "runtime_secret_missing" and seen == []
    cfg = hooks_config(token_env=None, token_file=tmp_path / "hooks.token")
    async with OpenClawHooksRuntime(cfg, {}, transport=transport) as rt:
        with pytest.raises(AgentFailure, match=r"hooks\.token in the gateway"):
            await rt.dispatch(job())


# --- probe -------------------------------------------------------------------------------------


async def test_probe_posts_an_empty_object_and_400_means_ready(
    loopback: Loopback, gateway: Gateway
) -> None:
    async with OpenClawHooksRuntime(hooks_config(loopback.url), ENV) as rt:
        probe = await rt.probe("dev-1")
    assert probe.ok and probe.target == f"the OpenClaw hooks at {loopback.url}/hooks/agent"
    [req] = loopback.seen
    assert req.body == b"{}" and req.headers["authorization"] == f"Bearer {HOOKS}"
    assert gateway.turns == {}  # no turn started


async def test_probe_wrong_token(loopback: Loopback, gateway: Gateway) -> None:
    env = {"OPENCLAW_HOOKS_TOKEN": "wrong"}
    async with OpenClawHooksRuntime(hooks_config(loopback.url), env) as rt:
        probe = await rt.probe("dev-1")
    assert (probe.ok, probe.code) == (False, "runtime_auth")
    assert "env var OPENCLAW_HOOKS_TOKEN" in probe.fix


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        (httpx.Response(429, headers={"Retry-After": "60"}), "runtime_locked_out", "60 s"),
        (httpx.Response(404), "runtime_bad_status", "no hooks endpoint"),
        (httpx.Response(502), "runtime_unreachable", "502 Bad Gateway"),
        (httpx.Response(200, json={"ok": True, "runId": "m-1"}), "", ""),
    ],
)
async def test_probe_answers(answer: httpx.Response, code: str, words: str) -> None:
    cfg = hooks_config("http://u:pw@gw.test/?k=secret")
    transport = httpx.MockTransport(lambda _: answer)
    async with OpenClawHooksRuntime(cfg, ENV, transport=transport) as rt:
        probe = await rt.probe("dev-1")
    assert (probe.ok, probe.code) == (not code, code)
    assert words in probe.problem
    assert "pw" not in probe.target + probe.problem and "secret" not in probe.target


async def test_probe_refused_and_missing_token() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with OpenClawHooksRuntime(hooks_config(f"ws://127.0.0.1:{port}"), ENV) as rt:
        probe = await rt.probe("dev-1")
    assert (probe.ok, probe.code) == (False, "runtime_unreachable")
    assert probe.problem.startswith(f"cannot reach the OpenClaw hooks at http://127.0.0.1:{port}")
    assert "running and reachable" in probe.fix
    async with OpenClawHooksRuntime(hooks_config(), {}) as rt:
        probe = await rt.probe("dev-1")
    assert (probe.ok, probe.code) == (False, "runtime_secret_missing")
    assert "env var OPENCLAW_HOOKS_TOKEN" in probe.fix
