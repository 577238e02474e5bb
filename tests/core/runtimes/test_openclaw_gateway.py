"""The gateway runtime's reading of OpenClaw's answers, on frames captured from a real gateway
(openclaw@2026.9.6); the turn itself is exercised against a real gateway in tests/e2e."""

from __future__ import annotations

import time

import pytest

from core.config import OpenClawRuntime
from core.errors import AgentFailure, AgentTimeout
from core.runtimes.base import Dispatch
from core.runtimes.openclaw.gateway import OpenClawGatewayRuntime, failure_code, session_key
from core.runtimes.openclaw.protocol import GatewayError, ws_url
from core.runtimes.wake import wake_message

OK_WAIT = {
    "runId": "625d2d46",
    "status": "ok",
    "startedAt": 1796192253206,
    "endedAt": 1796192259080,
    "stopReason": "stop",
    "terminalReceipt": {
        "effective": {"provider": "fake", "model": "cheap", "responseModel": "cheap"},
        "successfulToolNames": [],
    },
    "terminalReply": {"disposition": "visible", "text": "pong from fake"},
}
OK_FINAL = {
    "type": "res",
    "id": "ded4feeb",
    "ok": True,
    "payload": {
        "runId": "625d2d46",
        "status": "ok",
        "summary": "completed",
        "result": {
            "payloads": [{"text": "pong from fake", "mediaUrl": None}],
            "meta": {
                "agentMeta": {
                    "provider": "fake",
                    "model": "cheap",
                    "usage": {"input": 11638, "output": 3, "cacheRead": 0, "total": 11641},
                    "assistantTurns": 1,
                    "costUsd": 0.011644,
                }
            },
        },
    },
}
ERROR_WAIT = {
    "runId": "31754bf3",
    "status": "error",
    "startedAt": 1796192413462,
    "endedAt": 1796192489720,
    "error": "⚠️ fake/cheap request failed (provider internal error, HTTP 500). This is usually "
    "temporary — try again shortly.",
}


def _runtime(**over: object) -> OpenClawGatewayRuntime:
    cfg = OpenClawRuntime.model_validate(
        {"kind": "openclaw", "url": "http://127.0.0.1:18789", "token_env": "OC", **over}
    )
    return OpenClawGatewayRuntime(cfg, {"OC": "gateway-token"})


def _job(**over: object) -> Dispatch:
    fields: dict[str, object] = {
        "run_id": "run-1",
        "agent_id": "bishop",
        "agent_name": "Bishop",
        "company_id": "aliens",
        "issue": {"id": "ALI-7", "title": "Fix the door", "body": "It sticks."},
        "api_url": "http://127.0.0.1:8080",
        "token": "run-scoped.jwt.token",
        "token_file": None,
        "model": "glm-5.2-cloud",
        "max_turns": 50,
        "skills": (),
        "deadline": time.time() + 600,
        **over,
    }
    return Dispatch(**fields)  # type: ignore[arg-type]


def test_a_turn_that_replied_ends_the_run_with_the_reply_and_the_gateways_accounting() -> None:
    result = _runtime()._ending("625d2d46", OK_WAIT, OK_FINAL)
    assert result.finished and result.outcome is None
    assert result.summary == "pong from fake"
    assert result.external_id == "625d2d46" and result.reason_code == "turn_ended"
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (11638, 3)
    assert result.usage.cost == pytest.approx(0.011644)
    assert result.usage.model == "fake/cheap" and result.usage.turns == 1


def test_without_the_settling_answer_the_model_still_comes_from_the_receipt() -> None:
    result = _runtime()._ending("625d2d46", OK_WAIT, None)
    assert result.summary == "pong from fake"
    assert result.usage is not None and result.usage.model == "fake/cheap"


def test_a_failed_turn_raises_the_gateways_reason_with_a_precise_code() -> None:
    with pytest.raises(AgentFailure) as failed:
        _runtime()._ending("31754bf3", ERROR_WAIT, None)
    assert failed.value.code == "model_error"
    assert "HTTP 500" in failed.value.message and "31754bf3" in failed.value.message


def test_a_turn_the_gateway_timed_out_is_a_timeout() -> None:
    waited = {"runId": "x", "status": "timeout", "endedAt": 2, "error": "Request timed out"}
    with pytest.raises(AgentTimeout) as late:
        _runtime()._ending("x", waited, None)
    assert late.value.code == "turn_timed_out"


@pytest.mark.parametrize(
    ("text", "stop", "code"),
    [
        ("⚠️ fake/cheap request failed (provider internal error, HTTP 500).", "", "model_error"),
        ("⚠️ fake rate limit (HTTP 429); Retry-After: 1 seconds", "", "model_rate_limited"),
        (
            "LLM request failed: connection refused by the provider endpoint.",
            "",
            "model_unreachable",
        ),
        ("⚠️ Agent run failed (model: fake/cheap).", "", "turn_failed"),
        ("something else entirely", "", "turn_failed"),
        ("", "rpc", "turn_aborted"),
    ],
)
def test_failure_codes(text: str, stop: str, code: str) -> None:
    assert failure_code(text, stop) == code


def test_the_token_lockout_and_a_refused_token_are_final_and_name_the_token() -> None:
    runtime = _runtime()
    locked = GatewayError.of(
        "connect",
        {
            "code": "INVALID_REQUEST",
            "message": "unauthorized: too many failed authentication attempts (retry later)",
            "retryAfterMs": 299988,
            "details": {"code": "AUTH_RATE_LIMITED"},
        },
    )
    with pytest.raises(AgentFailure) as failed:
        runtime._refusal(locked)
    assert failed.value.code == "runtime_locked_out"
    assert "env var OC" in failed.value.message and "300s" in failed.value.message
    mismatch = GatewayError.of(
        "connect",
        {
            "code": "INVALID_REQUEST",
            "message": "unauthorized: gateway token mismatch",
            "details": {"code": "AUTH_TOKEN_MISMATCH"},
        },
    )
    with pytest.raises(AgentFailure) as refused:
        runtime._refusal(mismatch)
    assert refused.value.code == "runtime_auth" and "env var OC" in refused.value.message
    starting = GatewayError.of(
        "connect",
        {"code": "UNAVAILABLE", "message": "gateway starting; retry shortly", "retryAfterMs": 500},
    )
    assert runtime._refusal(starting) == 0.5


def test_one_session_per_issue_or_per_run() -> None:
    job = _job()
    issue_cfg = OpenClawRuntime(kind="openclaw", url="ws://h:1", token_env="T")
    run_cfg = OpenClawRuntime(kind="openclaw", url="ws://h:1", token_env="T", session="run")
    assert session_key(issue_cfg, "main", job) == "agent:main:fleetbot-issue-ali-7"
    assert session_key(run_cfg, "main", job) == "agent:main:fleetbot-run-run-1"


def test_http_urls_name_the_same_gateway() -> None:
    assert ws_url("http://127.0.0.1:18789") == "ws://127.0.0.1:18789"
    assert ws_url("https://gw.example.com") == "wss://gw.example.com"
    assert ws_url("wss://gw.example.com") == "wss://gw.example.com"


async def test_a_missing_token_is_named_before_anything_is_sent() -> None:
    cfg = OpenClawRuntime(kind="openclaw", url="ws://127.0.0.1:9", token_env="NOPE")
    async with OpenClawGatewayRuntime(cfg, {}) as runtime:
        with pytest.raises(AgentFailure) as failed:
            await runtime.dispatch(_job())
        assert failed.value.code == "runtime_secret_missing"
        probe = await runtime.probe("bishop")
        assert not probe.ok and probe.code == "runtime_secret_missing"


async def test_a_closed_port_is_unreachable_within_the_runtime_timeout() -> None:
    cfg = OpenClawRuntime(kind="openclaw", url="ws://127.0.0.1:9", token_env="T", timeout="1s")
    async with OpenClawGatewayRuntime(cfg, {"T": "x"}) as runtime:
        started = time.monotonic()
        with pytest.raises(AgentFailure) as failed:
            await runtime.dispatch(_job())
        assert failed.value.code == "runtime_unreachable"
        assert time.monotonic() - started < 3
        probe = await runtime.probe("bishop")
        assert not probe.ok and probe.code == "runtime_unreachable"


def test_the_wake_message_is_short_imperative_and_names_no_model() -> None:
    text = wake_message(_job(wake_reason="assigned"))
    assert "run-scoped.jwt.token" in text  # the run's own token: the agent can call back
    assert "glm-5.2-cloud" not in text  # the runtime picks the model, not the message
    assert "/api/v1/runs/run-1/finish" in text and "ALI-7" in text and "It sticks." in text
    assert "just assigned" in text
    # ~4 characters a token: well under the 400-token budget, body included
    assert len(text) / 4 < 400
