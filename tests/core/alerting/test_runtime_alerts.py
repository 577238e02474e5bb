"""runtime_unreachable through the watchdog and a real store: one alert per dead target naming
its agents, raised once, kept while the probe fails, resolved by itself when it passes; and a
run that fails on its runtime has the runtime probed at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from stack_helpers import Stack, config_data, open_stack, raises

from core.alerting.book import AlertBook, AlertKind, AlertState, Fix, Severity
from core.alerting.outbox import Outbox
from core.alerting.watchdog import Monitors
from core.clock import ManualClock
from core.config import Config, parse_config
from core.engine.recovery import Recovery
from core.engine.runtime_check import RuntimeWatch
from core.errors import AgentUnreachable
from core.models import Agent, AgentStatus
from core.reports.costs import CostBook
from core.runtimes.base import Dispatch, DispatchResult, Probe, Runtime

OWNER = 1001
GATEWAY = "the OpenClaw gateway at ws://127.0.0.1:18789"
BEHIND = ("ali-ceo", "ali-cto", "ali-qa-1")  # ali-qa-2 and ali-cmo keep working


def config(tmp_path: Path) -> Config:
    data = config_data(tmp_path)
    data["telegram"] = {"owners": [OWNER]}
    data["companies"][0]["chat"] = -1001
    data["alerts"] = {"group_wait": "30s", "repeat_interval": "4h"}
    return parse_config(data, "test")


@dataclass
class Gateway:
    """Three agents' runtime: down until `up` is set; every probe is recorded."""

    up: bool = False
    probes: list[str] = field(default_factory=list)


class GatewayRuntime(Runtime):
    kind = "openclaw"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        raise AssertionError("the watchdog only probes")

    async def probe(self, agent_id: str) -> Probe:
        self.gateway.probes.append(agent_id)
        if self.gateway.up:
            return Probe(True, GATEWAY)
        return Probe(
            False,
            GATEWAY,
            "it cannot be reached: connection refused",
            "start the gateway, or fix the runtime's url",
            "runtime_unreachable",
        )


class Fine(Runtime):
    kind = "simulated"

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        raise AssertionError("the watchdog only probes")


@dataclass
class Watch:
    stack: Stack
    book: AlertBook
    outbox: Outbox
    monitors: Monitors
    gateway: Gateway

    @property
    def clock(self) -> ManualClock:
        return self.stack.clock

    async def alert_rows(self) -> int:
        return len([r for r in await self.outbox.rows() if r.kind == "alert"])


@pytest.fixture
async def watch(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Watch]:
    cfg = config(tmp_path)
    gateway = Gateway()
    fine = Fine()
    by_agent = {a: GatewayRuntime(gateway) for a in BEHIND}

    def runtimes(agent: Agent) -> Runtime:
        return by_agent.get(agent.id, fine)

    failing = raises(AgentUnreachable("connection refused"))
    async with open_stack(tmp_path, clock, config=cfg, behaviour=failing) as stack:
        outbox = Outbox(stack.db, clock, cfg)
        book = AlertBook(stack.db, clock, cfg, outbox)
        monitors = Monitors(
            stack.service,
            book,
            CostBook(stack.db, clock),
            Recovery(stack.service, cfg),
            cfg,
            clock,
            runtimes=RuntimeWatch(stack.service, runtimes),
        )
        unsubscribe = stack.service.events.subscribe(monitors.on_event)
        try:
            yield Watch(stack, book, outbox, monitors, gateway)
        finally:
            unsubscribe()
            await monitors.aclose()


async def test_one_dead_gateway_is_one_alert_until_it_answers(watch: Watch) -> None:
    w = watch
    report = await w.monitors.check_runtimes(why="startup")
    assert report.summary() == "4/7 runtimes reachable"
    [line] = report.lines()[1:]
    assert line.startswith(f"  {GATEWAY} — runtime_unreachable, agents ali-ceo, ali-cto, ali-qa-1")
    [alert] = await w.book.firing()
    assert alert.kind is AlertKind.RUNTIME_UNREACHABLE
    assert alert.cause == f"runtime_unreachable:{GATEWAY}"
    assert [m.agent_id for m in alert.members] == list(BEHIND)
    assert alert.severity is Severity.WARNING  # two aliens agents still work
    assert alert.fixes == (Fix.RECHECK,)
    assert "Fix: start the gateway" in alert.members[0].detail
    w.clock.advance(30)
    await w.book.flush()
    sent = await w.alert_rows()
    assert sent == 2  # once: the owner and the aliens chat

    # Every pass probes the suspects only, and finds the same: no new alert, no new message.
    w.gateway.probes.clear()
    for _ in range(3):
        w.clock.advance(60)
        await w.monitors.run()
    assert sorted(w.gateway.probes) == sorted(BEHIND * 3)
    assert [a.id for a in await w.book.firing()] == [alert.id]
    assert await w.alert_rows() == sent

    w.gateway.up = True
    w.clock.advance(60)
    await w.monitors.run()
    resolved = await w.book.get(alert.id)
    assert resolved.state is AlertState.RESOLVED and await w.book.firing() == []
    # Healthy again: the next pass probes nobody.
    w.gateway.probes.clear()
    await w.monitors.run()
    assert w.gateway.probes == []


async def test_a_run_failing_on_its_runtime_probes_it_at_once(watch: Watch) -> None:
    w = watch
    svc = w.stack.service
    await svc.file_issue(title="Ship", assignee="ali-ceo", actor="t")
    await w.stack.scheduler.drain()
    await w.monitors.settle()
    assert (await svc.agent("ali-ceo")).status is AgentStatus.ERROR
    assert w.gateway.probes == ["ali-ceo"]  # once, for the run's end and the status change
    [alert] = await w.book.firing()  # its target's alert, not an agent_error of its own
    assert alert.kind is AlertKind.RUNTIME_UNREACHABLE
    assert [m.agent_id for m in alert.members] == ["ali-ceo"]

    # The gateway is back but the agent still sits in error: now that is what the alert says.
    w.gateway.up = True
    w.clock.advance(60)
    await w.monitors.run()
    [error] = await w.book.firing()
    assert (error.kind, error.cause) == (AlertKind.AGENT_ERROR, "agent_error:runtime_unreachable")
    assert (await w.book.get(alert.id)).state is AlertState.RESOLVED


async def test_check_again_on_some_agents_keeps_the_others(watch: Watch) -> None:
    w = watch
    await w.monitors.check_runtimes(why="startup")
    w.gateway.up = True
    report = await w.monitors.check_runtimes({"ali-ceo"})
    assert report.summary() == "1/1 runtimes reachable"
    [alert] = await w.book.firing()
    assert [m.agent_id for m in alert.active_members] == ["ali-cto", "ali-qa-1"]


async def test_without_a_watch_there_is_nothing_to_check(
    tmp_path: Path, clock: ManualClock
) -> None:
    cfg = config(tmp_path)
    async with open_stack(tmp_path, clock, config=cfg) as stack:
        outbox = Outbox(stack.db, clock, cfg)
        book = AlertBook(stack.db, clock, cfg, outbox)
        costs, recovery = CostBook(stack.db, clock), Recovery(stack.service, cfg)
        monitors = Monitors(stack.service, book, costs, recovery, cfg, clock)
        assert (await monitors.check_runtimes()).summary() == "0/0 runtimes reachable"
