"""A dead runtime as the owner sees it, through the real Application and the offline Bot API:
/authcheck answers both self-tests, the agents behind it read "unreachable" in /agents, /agent
and /status, one alert names them with a "Check again" button, and it resolves when the
runtime answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bot_helpers import (
    ALIENS_CHAT,
    OPERATOR,
    OWNER,
    VIEWER,
    Desk,
    button_data,
    buttons,
    running_desk,
)
from stack_helpers import force_status

from core.alerting.book import AlertKind, AlertState
from core.models import Agent, AgentStatus
from core.runtimes.base import Dispatch, DispatchResult, Probe, Runtime

GATEWAY = "the OpenClaw gateway at ws://127.0.0.1:18789"
BEHIND = {"bishop", "hicks"}


class Gateway(Runtime):
    """Bishop's and Hicks's runtime: refuses connections until `up` is set."""

    kind = "openclaw"
    up = False

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        raise AssertionError("nothing is dispatched in these tests")

    async def probe(self, agent_id: str) -> Probe:
        if self.up:
            return Probe(True, GATEWAY)
        return Probe(
            False,
            GATEWAY,
            "it cannot be reached: connection refused",
            "start the gateway, or fix the runtime's url",
            "runtime_unreachable",
        )


@pytest.fixture
async def desk(tmp_path: Path) -> Any:
    async with running_desk(tmp_path) as d:
        yield d
        assert not d.errors.records, [r.getMessage() for r in d.errors.records]


def gateway_behind(desk: Desk) -> Gateway:
    """Put bishop and hicks behind one fake gateway; the others keep their simulated runtime."""
    watch = desk.fleet.runtime_watch
    real = watch.runtimes
    gateway = Gateway()

    def runtimes(agent: Agent) -> Runtime:
        return gateway if agent.id in BEHIND else real(agent)

    watch.runtimes = runtimes
    return gateway


async def test_authcheck_answers_tokens_and_runtimes(desk: Desk) -> None:
    ok = await desk.ask(OPERATOR, "/authcheck")
    assert "6/6 agents authenticated" in ok["text"] and "6/6 runtimes reachable" in ok["text"]
    gateway_behind(desk)
    bad = await desk.ask(OPERATOR, "/authcheck")
    text = bad["text"]
    assert "6/6 agents authenticated" in text and "📡 Runtime check: 4/6 runtimes reachable" in text
    # One line for the gateway, naming both agents, then the problem and the fix.
    assert f"📡 {GATEWAY} — runtime_unreachable · bishop, hicks" in text
    assert "connection refused. Fix: start the gateway, or fix the runtime's url." in text
    assert text.count(GATEWAY) == 1
    help_ = await desk.ask(VIEWER, "/help")
    assert "/authcheck" not in help_["text"]  # operators and owners only
    helped = await desk.ask(OPERATOR, "/help")
    assert "/authcheck — Test every agent's token and runtime now" in helped["text"]


async def test_agents_behind_a_dead_runtime_show_as_unreachable(desk: Desk) -> None:
    gateway_behind(desk)
    # Hicks's last run failed on it: in error, but while it is down that is the runtime's doing.
    await force_status(desk.fleet.service, "hicks", AgentStatus.ERROR, "runtime_unreachable")
    await desk.fleet.monitors.check_runtimes(why="test")
    listed = (await desk.ask(OWNER, "/agents"))["text"]
    assert f"📡 bishop Bishop · cto — unreachable: {GATEWAY}: it cannot be reached" in listed
    assert "📡 hicks Hicks · qa — unreachable" in listed
    assert "🟢 ripley Ripley · ceo" in listed and "ripley Ripley · ceo —" not in listed
    card = (await desk.ask(OWNER, "/agent bishop"))["text"]
    assert card.startswith("📡 Bishop bishop")
    assert "Status: unreachable (idle for" in card and "Why:" not in card
    hicks = await desk.ask(OWNER, "/agent hicks")
    assert "Status: unreachable (error for" in hicks["text"] and "Why: set by test" in hicks["text"]
    assert "♻️ Reset" in buttons(hicks)  # for once the gateway is back
    assert (
        f"Runtime: {GATEWAY} — it cannot be reached: connection refused. Fix: start the gateway"
        in card
    )
    status = (await desk.ask(OWNER, "/status"))["text"]
    assert "📡 2 unreachable · 🟢 2 idle" in status and "🔴" not in status  # aliens
    assert "🟢 2 idle" in status.split("StarDust Meet")[1]  # matrix untouched


async def test_one_alert_names_the_agents_and_check_again_resolves_it(desk: Desk) -> None:
    fleet, clock = desk.fleet, desk.clock
    gateway = gateway_behind(desk)
    await fleet.monitors.check_runtimes(why="test")
    clock.advance(fleet.config.alerts.group_wait + 1)
    await fleet.alerts.flush()
    message = await desk.reply(OWNER)
    text = message["text"]
    assert text.startswith("📡 #1 Runtime unreachable · runtime_unreachable")
    assert "2 agents · since" in text and f"Down: {GATEWAY}" in text
    assert "Agents: Bishop (cto), Hicks (qa)" in text
    assert "Fix: start the gateway, or fix the runtime's url." in text
    assert {"👍 Acknowledge", "🔕 1h", "🔄 Check again"} <= set(buttons(message))
    team = await desk.reply(ALIENS_CHAT)  # the aliens' own alert: both agents are theirs
    assert "Agents: Bishop (cto), Hicks (qa)" in team["text"]
    assert len(desk.api.messages(OWNER)) == 1  # one message, not one per agent

    again = button_data(message, "Check again")
    answer = await desk.press(OPERATOR, ALIENS_CHAT, team, button_data(team, "Check again"))
    assert answer == "Still down: 0/2 runtimes reachable."
    assert "Alert #1, checked again" in (await desk.reply(ALIENS_CHAT))["text"]
    gateway.up = True
    answer = await desk.press(OWNER, OWNER, message, again)
    assert answer == "✅ Reachable again (2/2 runtimes reachable); alert #1 is resolved."
    [alert] = await fleet.alerts.recent()
    assert alert.kind is AlertKind.RUNTIME_UNREACHABLE and alert.state is AlertState.RESOLVED
    await desk.api.wait_for_call(
        "editMessageText",
        lambda c: (
            str(c.params.get("chat_id")) == str(OWNER)
            and str(c.params.get("message_id")) == str(message["message_id"])
            and "Resolved" in str(c.params.get("text"))
            and f"Was down:</b> {GATEWAY}" in str(c.params.get("text"))
        ),
    )
    listed = (await desk.ask(OWNER, "/agents"))["text"]
    assert "unreachable" not in listed and "🟢 bishop Bishop · cto" in listed
