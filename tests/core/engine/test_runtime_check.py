"""The runtime self-test: grouping by target (pure), the report's lines, and probing many agents
at once with a bound, a per-probe timeout, and failures of the probe itself."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from stack_helpers import config_data

from core.alerting.monitors import Snapshot, evaluate, find_runtime_unreachable
from core.alerting.records import AlertKind, Severity
from core.config import parse_config
from core.engine.runtime_check import (
    RuntimeCheck,
    RuntimeReport,
    group_failures,
    probe_all,
    unreachable,
)
from core.errors import AgentFailure
from core.models import Agent, AgentStatus
from core.runtimes.base import Dispatch, DispatchResult, Probe, Runtime

GATEWAY = "the OpenClaw gateway at ws://127.0.0.1:18789"
ENDPOINT = "the agent at http://127.0.0.1:9/hook"
REFUSED = "it cannot be reached: connection refused"
START = "start the gateway, or fix the runtime's url"
CONFIG = parse_config(config_data(Path("/nonexistent")), "test")


def agent(agent_id: str, company: str = "aliens", **kw: object) -> Agent:
    base = Agent(
        id=agent_id,
        company_id=company,
        name=agent_id.title(),
        role=agent_id.rpartition("-")[2],
        reports_to=None,
        status=AgentStatus.IDLE,
        reason="",
        reason_code="",
        status_changed_at=0.0,
        model="m",
        heartbeat_seconds=14400,
        next_heartbeat_at=1e12,
        token_version=1,
        skills=(),
        max_turns=5,
        run_timeout_seconds=1800,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def down(agent_id: str, company: str = "aliens", target: str = GATEWAY, **kw: str) -> RuntimeCheck:
    fields = {"problem": REFUSED, "fix": START, "code": "runtime_unreachable", **kw}
    return RuntimeCheck(agent_id, company, False, target, **fields)  # type: ignore[arg-type]


def up(agent_id: str, company: str = "aliens") -> RuntimeCheck:
    return RuntimeCheck(agent_id, company, True, "the simulated runtime")


# -- grouping (pure) ----------------------------------------------------------------------------


def test_three_agents_behind_one_dead_gateway_are_one_line() -> None:
    checks = [down("ali-ceo"), up("ali-cmo"), down("ali-cto"), down("mat-ceo", "matrix")]
    [group] = group_failures(checks)
    assert group.target == GATEWAY and group.code == "runtime_unreachable"
    assert group.agents == ("ali-ceo", "ali-cto", "mat-ceo")
    assert group.companies == ("aliens", "matrix")
    report = RuntimeReport(checks)
    assert report.lines() == [
        "1/4 runtimes reachable",
        f"  {GATEWAY} — runtime_unreachable, agents ali-ceo, ali-cto, mat-ceo: "
        "it cannot be reached: connection refused. "
        "Fix: start the gateway, or fix the runtime's url.",
    ]
    # -v lists every agent: the failing ones in their target's line, then each that passed.
    assert report.lines(verbose=True)[-1] == "  ali-cmo: ok (the simulated runtime)"


def test_targets_and_codes_are_told_apart_and_agent_specific_problems_listed() -> None:
    checks = [
        down("ali-ceo"),
        down("ali-cto", target=ENDPOINT, problem="cannot reach it (refused).", fix=""),
        down("mat-ceo", code="agent_unknown", problem="it has no agent 'mat-ceo'", fix="add it"),
        down("mat-cto", code="agent_unknown", problem="it has no agent 'mat-cto'", fix="add it"),
    ]
    groups = group_failures(checks)
    assert [(g.target, g.code, g.agents) for g in groups] == [
        (GATEWAY, "runtime_unreachable", ("ali-ceo",)),
        (ENDPOINT, "runtime_unreachable", ("ali-cto",)),
        (GATEWAY, "agent_unknown", ("mat-ceo", "mat-cto")),
    ]
    lines = RuntimeReport(checks).lines()
    assert lines[0] == "0/4 runtimes reachable"
    assert (
        lines[2] == f"  {ENDPOINT} — runtime_unreachable, agent ali-cto: cannot reach it (refused)."
    )
    assert lines[3:] == [
        f"  {GATEWAY} — agent_unknown, agents mat-ceo, mat-cto:",
        "    mat-ceo: it has no agent 'mat-ceo'. Fix: add it.",
        "    mat-cto: it has no agent 'mat-cto'. Fix: add it.",
    ]
    assert RuntimeReport([up("a"), up("b")]).lines() == ["2/2 runtimes reachable"]
    assert RuntimeReport().ok and RuntimeReport().summary() == "0/0 runtimes reachable"


def test_one_finding_per_agent_one_cause_per_target() -> None:
    agents = tuple(agent(a) for a in ("ali-ceo", "ali-cto", "ali-qa-1", "ali-qa-2"))
    failures = {a: down(a) for a in ("ali-ceo", "ali-cto", "ali-qa-1")}
    found = find_runtime_unreachable(Snapshot(0.0, agents, runtime_failures=failures), CONFIG)
    assert [f.subject for f in found] == ["agent:ali-ceo", "agent:ali-cto", "agent:ali-qa-1"]
    assert {f.cause for f in found} == {f"runtime_unreachable:{GATEWAY}"}  # one alert
    assert {f.kind for f in found} == {AlertKind.RUNTIME_UNREACHABLE}
    assert {f.detail for f in found} == {f"{REFUSED}. Fix: {START}."}
    # ali-qa-2 still works: not the whole company, a warning.
    assert {f.severity for f in found} == {Severity.WARNING}


def test_critical_when_it_holds_every_working_agent_of_a_company() -> None:
    agents = (
        agent("ali-ceo"),
        agent("ali-cto", status=AgentStatus.PAUSED),  # paused: works for nobody anyway
        agent("mat-ceo", "matrix"),
    )
    failures = {"ali-ceo": down("ali-ceo"), "mat-ceo": down("mat-ceo", "matrix", ENDPOINT)}
    found = find_runtime_unreachable(Snapshot(0.0, agents, runtime_failures=failures), CONFIG)
    assert {(f.subject, f.severity) for f in found} == {
        ("agent:ali-ceo", Severity.CRITICAL),
        ("agent:mat-ceo", Severity.CRITICAL),
    }
    assert len({f.cause for f in found}) == 2  # two dead targets, two alerts


def test_an_agent_in_error_behind_a_dead_runtime_is_not_alerted_twice() -> None:
    broken = agent("ali-ceo", status=AgentStatus.ERROR, reason_code="runtime_unreachable")
    other = agent("ali-cto", status=AgentStatus.ERROR, reason_code="run_timed_out")
    failing = {"ali-ceo": down("ali-ceo"), "ali-cto": down("ali-cto")}
    found = evaluate(Snapshot(0.0, (broken, other), runtime_failures=failing), CONFIG)
    assert sorted((f.kind.value, f.subject) for f in found) == [
        ("agent_error", "agent:ali-cto"),  # a different failure: its own alert
        ("runtime_unreachable", "agent:ali-ceo"),
        ("runtime_unreachable", "agent:ali-cto"),
    ]
    # Once the probe passes, the agent still in error is an agent_error (Reset).
    [again] = evaluate(Snapshot(0.0, (broken,)), CONFIG)
    assert (again.kind, again.reason_code) == (AlertKind.AGENT_ERROR, "runtime_unreachable")


def test_idle_agents_and_those_it_put_in_error_show_as_unreachable() -> None:
    agents = [
        agent("ali-ceo"),
        agent("ali-cto", status=AgentStatus.ERROR, reason_code="runtime_unreachable"),
        agent("ali-qa-1", status=AgentStatus.ERROR, reason_code="run_timed_out"),
        agent("ali-qa-2", status=AgentStatus.PAUSED),
        agent("ali-cmo"),  # its probe passed
    ]
    failing = {a.id: down(a.id) for a in agents[:4]}
    assert list(unreachable(agents, failing)) == ["ali-ceo", "ali-cto"]


# -- probing ------------------------------------------------------------------------------------


class Fake(Runtime):
    kind = "fake"

    def __init__(self, act: str, gauge: list[int]) -> None:
        self.act = act
        self.gauge = gauge  # [in flight, most in flight]

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        raise AssertionError("a self-test never dispatches")

    async def probe(self, agent_id: str) -> Probe:
        self.gauge[0] += 1
        self.gauge[1] = max(self.gauge)
        try:
            await asyncio.sleep(0.01)
            if self.act == "hang":
                await asyncio.sleep(60)
            if self.act == "raise":
                raise AgentFailure("the token file is unreadable", code="runtime_secret_missing")
            if self.act == "crash":
                raise KeyError("bug")
            return Probe(self.act == "ok", ENDPOINT, "refused", "", "runtime_unreachable")
        finally:
            self.gauge[0] -= 1


async def test_probes_run_concurrently_bounded_and_each_timed_out() -> None:
    gauge = [0, 0]
    agents = [
        agent(f"a-{n}", runtime={"kind": "http", "url": "http://u:p@h:1/x?k=s"}) for n in range(20)
    ]
    acts = {"a-0": "hang", "a-1": "raise", "a-2": "crash", "a-3": "down"}
    loop = asyncio.get_running_loop()
    started = loop.time()
    report = await probe_all(
        agents,
        lambda a: Fake(acts.get(a.id, "ok"), gauge),
        within=0.2,
        known={"a-1": "the agent at http://h:1/x"},
    )
    assert loop.time() - started < 2  # 20 probes, 8 at once, the hang cut at 0.2 s
    assert gauge[1] == 8
    assert report.summary() == "16/20 runtimes reachable"
    hung, raised, crashed, refused = report.checks[:4]
    # A probe that says nothing: its target from the config, without the URL's secrets.
    assert (hung.code, hung.target) == ("runtime_timeout", "the http runtime at http://h:1/x")
    assert "did not answer the self-test within 0.2 s" in hung.problem
    assert (raised.code, raised.target) == ("runtime_secret_missing", "the agent at http://h:1/x")
    assert crashed.code == "probe_crashed" and "KeyError" in crashed.problem
    assert (refused.code, refused.target) == ("runtime_unreachable", ENDPOINT)


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        ({"kind": "process", "command": ["/bin/agent", "--x"]}, "the command /bin/agent"),
        ({"kind": "simulated"}, "the simulated runtime of a-0"),
    ],
)
async def test_a_hung_probe_names_the_runtime_from_its_config(
    runtime: dict[str, object], expected: str
) -> None:
    report = await probe_all(
        [agent("a-0", runtime=runtime)], lambda a: Fake("hang", [0, 0]), within=0.05
    )
    assert report.checks[0].target == expected
