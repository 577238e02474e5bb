"""The harness itself, without fleetbot: a real gateway, the fake model, the raw protocol (v4).

If these fail, the suite's set-up is broken (install, config, fake model), not fleetbot.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e import protocol
from tests.e2e.conftest import E2E_TIMEOUT
from tests.e2e.fake_model import Exec, Fail, Reply
from tests.e2e.gateway import Gateway

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(E2E_TIMEOUT)]


async def run_turn(gateway: Gateway, message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return await protocol.run_turn(gateway.ws_url, gateway.token, message)


async def test_a_turn_reaches_the_fake_model_and_its_reply_comes_back(gateway: Gateway) -> None:
    tag = gateway.model.scenario(Reply("pong from the fake model"))
    accepted, outcome = await run_turn(gateway, f"ping {tag}")
    assert outcome["status"] == "ok", outcome
    assert outcome["terminalReply"]["text"] == "pong from the fake model"
    assert outcome["runId"] == accepted["runId"]
    [call] = gateway.model.calls(tag)
    assert call.path == "/v1/chat/completions"
    assert call.body["stream"] is True
    assert call.body["stream_options"]["include_usage"] is True
    assert call.body["model"] == "cheap"
    assert call.final_chunk_at is not None
    # The turn ends after the model's last chunk, and OpenClaw stamps it in epoch milliseconds.
    assert outcome["endedAt"] / 1000 >= call.final_chunk_at - 1


async def test_a_tool_call_runs_in_a_shell_and_the_next_step_sees_its_output(
    gateway: Gateway,
) -> None:
    tag = gateway.model.scenario(Exec("echo from-the-shell-$((6*7))"), Reply("saw it"))
    _, outcome = await run_turn(gateway, f"run a command {tag}")
    assert outcome["status"] == "ok", outcome
    assert outcome["terminalReply"]["text"] == "saw it"
    first, second = gateway.model.calls(tag)
    assert (first.step, second.step) == (0, 1)
    assert "from-the-shell-42" in second.tool_results[-1]
    assert gateway.model.turns(tag) == 1


async def test_a_model_that_answers_400_fails_the_turn_at_once(gateway: Gateway) -> None:
    """OpenClaw retries 5xx and 429 for ninety seconds or more, but not a bad request: this is
    how the suite makes a model error that ends a turn fast."""
    tag = gateway.model.scenario(Fail(400, "the fake model refuses this request"))
    started = time.monotonic()
    _, outcome = await run_turn(gateway, f"fail {tag}")
    assert outcome["status"] == "error", outcome
    assert time.monotonic() - started < 15, outcome
    assert len(gateway.model.calls(tag)) == 1  # not retried
    [call] = gateway.model.calls(tag)
    assert call.final_chunk_at is not None
    assert outcome["endedAt"] / 1000 - call.final_chunk_at < 2, outcome
    assert outcome["error"], outcome
