"""Monitors: each finder against a table (no clock, no store), then the runner and the event
path against a real store: every kind fires, groups, repeats, is acknowledged, muted, resolved."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from stack_helpers import Stack, config_data, make_auth, open_stack, raises

from core.alerting.book import AlertBook, AlertKind, AlertState, Finding, Fix, Severity
from core.alerting.monitors import (
    MONITORED,
    AuthSignal,
    Snapshot,
    evaluate,
    find_agent_status,
    find_auth_signals,
    find_blocked,
    find_budget,
    find_queue_empty,
    find_silent,
    find_stuck,
)
from core.alerting.outbox import Outbox
from core.alerting.watchdog import Monitors
from core.clock import ManualClock
from core.config import Config, parse_config
from core.engine.recovery import Recovery
from core.engine.runtime_check import RuntimeCheck
from core.errors import AgentFailure, TokenInvalid
from core.fleet import Fleet
from core.models import (
    Agent,
    AgentStatus,
    Issue,
    IssueStatus,
    Priority,
    Routine,
    Run,
    RunOutcome,
    RunStatus,
)
from core.queues.breaker import Velocity
from core.reports.costs import CostBook
from core.service import FleetService
from core.store import agents as agent_store
from core.store.engines import database_for

T0 = 1_767_225_600.0
OWNER = 1001


def cfg(tmp_path: Path | None = None, **over: Any) -> Config:
    data = config_data(tmp_path or Path("/nonexistent"))
    data["telegram"] = {"owners": [OWNER]}
    data["companies"][0].update(chat=-1001, budget={"monthly_usd": 10})
    data["companies"][0]["agents"][1]["monthly_budget"] = 2.0
    data["monitors"] = {"interval": "1m", "stuck_after": "30m", "silent_after": "2h"}
    data["alerts"] = {"group_wait": "30s", "repeat_interval": "4h"}
    for key, value in over.items():
        data[key].update(value)
    return parse_config(data, "test")


CONFIG = cfg()


def agent(agent_id: str = "ali-ceo", **kw: Any) -> Agent:
    base = Agent(
        id=agent_id,
        company_id="aliens",
        name=agent_id.title(),
        role="ceo",
        reports_to=None,
        status=AgentStatus.IDLE,
        reason="",
        reason_code="",
        status_changed_at=T0,
        model="m",
        heartbeat_seconds=4 * 3600,
        next_heartbeat_at=T0 + 3600,
        token_version=1,
        skills=(),
        max_turns=50,
        run_timeout_seconds=1800,
        last_seen_at=T0,
    )
    return replace(base, **kw)


def run(agent_id: str = "ali-ceo", **kw: Any) -> Run:
    base = Run(
        id="r1",
        agent_id=agent_id,
        issue_id="ALI-1",
        status=RunStatus.RUNNING,
        reason="",
        reason_code="",
        started_at=T0,
        deadline=T0 + 1800,
        ended_at=None,
        turns=0,
        max_turns=50,
        input_tokens=0,
        output_tokens=0,
        cost=0,
        model="m",
        summary="",
        last_progress_at=T0,
    )
    return replace(base, **kw)


def issue(reason: str, **kw: Any) -> Issue:
    base = Issue(
        id="ALI-1",
        company_id="aliens",
        number=1,
        title="Fix login",
        body="",
        status=IssueStatus.BLOCKED,
        assignee_id="ali-cto",
        created_by="t",
        model=None,
        attempts=3,
        max_attempts=3,
        lease_run_id=None,
        lease_until=None,
        not_before=None,
        reason=reason,
        created_at=T0,
        updated_at=T0,
    )
    return replace(base, **kw)


async def break_agent(service: FleetService, agent_id: str, status: AgentStatus, code: str) -> None:
    """Put an agent into `status` as a failed run would, event included."""
    async with service.db.write() as conn:
        current = await agent_store.get(conn, agent_id)
        assert current is not None
        now = service.clock.now()
        event = await agent_store.set_status(conn, current, status, now, f"broken: {code}", code)
    if event is not None:
        service.events.publish(event)


def routine(number: int, **kw: Any) -> Routine:
    base: dict[str, Any] = dict(
        id=number,
        company_id="aliens",
        name=f"standup-{number}",
        assignee="ali-ceo",
        schedule="daily 09:00",
        timezone="UTC",
        title="Standup {date}",
        body="",
        priority=Priority.MEDIUM,
        source="chat",
        paused=False,
        next_at=T0,
        last_at=None,
        last_issue=None,
        skipped=0,
        streak=0,
        missed=0,
        late="",
        created_by="alice",
        created_at=T0,
    )
    return Routine(**{**base, **kw})


def kinds(found: list[Finding]) -> list[tuple[str, str, str]]:
    return [(f.kind.value, f.subject, f.reason_code) for f in found]


# -- pure finders -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (AgentStatus.IDLE, "", []),
        (AgentStatus.PAUSED, "budget", []),
        (AgentStatus.ERROR, "run_timed_out", [("agent_error", "run_timed_out")]),
        # Unprobed (no runtime failure in the snapshot): an error like any other.
        (AgentStatus.ERROR, "runtime_unreachable", [("agent_error", "runtime_unreachable")]),
        (
            AgentStatus.ERROR,
            "agent_unauthorized",
            [("agent_unauthenticated", "agent_unauthorized")],
        ),
        (AgentStatus.UNAUTHENTICATED, "unknown_key", [("agent_unauthenticated", "unknown_key")]),
    ],
)
def test_find_agent_status(status: AgentStatus, code: str, expected: list[tuple[str, str]]) -> None:
    s = Snapshot(T0, (agent(status=status, reason_code=code, reason="why"),))
    found = find_agent_status(s, CONFIG)
    assert [(f.kind.value, f.reason_code) for f in found] == expected
    for f in found:
        assert f.cause == f"{f.kind.value}:{code}" and f.label == "Ali-Ceo (ceo)"


def test_error_alert_says_when_it_auto_resets() -> None:
    s = Snapshot(
        T0,
        (agent(status=AgentStatus.ERROR, reason="boom", reason_code="x"),),
        auto_resets={"ali-ceo": (1, T0 + 600)},
    )
    [f] = find_agent_status(s, CONFIG)
    assert f.detail == "boom · auto-reset #2 at 00:10 UTC" and f.fixes == (Fix.RESET,)


@pytest.mark.parametrize(
    ("runs", "now", "expected"),
    [
        ([run()], T0 + 60, []),
        ([run()], T0 + 1801, [("agent_stuck", "agent:ali-ceo", "deadline")]),
        ([run(deadline=T0 + 7200)], T0 + 1801, [("agent_stuck", "agent:ali-ceo", "no_progress")]),
        ([run(deadline=T0 + 7200, last_progress_at=T0 + 600)], T0 + 1801, []),
        ([run(agent_id="ghost")], T0 + 9999, []),
    ],
)
def test_find_stuck(runs: list[Run], now: float, expected: list[tuple[str, str, str]]) -> None:
    s = Snapshot(now, (agent(status=AgentStatus.RUNNING),), live_runs=tuple(runs))
    assert kinds(find_stuck(s, CONFIG)) == expected


@pytest.mark.parametrize(
    ("a", "runs", "now", "expected"),
    [
        (agent(status=AgentStatus.RUNNING), [], T0 + 3600, []),
        (agent(status=AgentStatus.RUNNING), [], T0 + 7201, ["agent:ali-ceo"]),
        (agent(status=AgentStatus.RUNNING, last_seen_at=T0 + 7000), [], T0 + 7201, []),
        # A run that is stuck says it already; silent is not repeated.
        (agent(status=AgentStatus.RUNNING), [run(deadline=T0 + 9e9)], T0 + 7201, []),
        (agent(next_heartbeat_at=T0), [], T0 + 7201, ["agent:ali-ceo"]),
        (agent(next_heartbeat_at=T0, status=AgentStatus.PAUSED), [], T0 + 9e5, []),
    ],
)
def test_find_silent(a: Agent, runs: list[Run], now: float, expected: list[str]) -> None:
    s = Snapshot(now, (a,), live_runs=tuple(runs))
    assert [f.subject for f in find_silent(s, CONFIG)] == expected


def test_find_queue_empty() -> None:
    s = Snapshot(T0, (), empty_queues={"aliens": (3, T0 - 60), "matrix": (2, T0)})
    [f] = find_queue_empty(s, CONFIG)
    assert (f.subject, f.fixes, f.severity) == ("company:aliens", None, None)
    assert f.detail.startswith("no open issue since 23:59 UTC")
    assert f.cause == "queue_empty"


@pytest.mark.parametrize(
    ("spend", "expected"),
    [
        ({}, []),
        ({"company:aliens": 7.99}, []),
        ({"company:aliens": 8.0}, [("company:aliens", "warn")]),
        (
            {"company:aliens": 10.0, "agent:ali-cto": 1.7},
            [
                ("company:aliens", "stop"),
                ("agent:ali-cto", "warn"),
            ],
        ),
        ({"agent:ali-cto": 2.5}, [("agent:ali-cto", "stop")]),
    ],
)
def test_find_budget(spend: dict[str, float], expected: list[tuple[str, str]]) -> None:
    found = find_budget(Snapshot(T0, (), spend=spend), CONFIG)
    assert [(f.subject, f.reason_code) for f in found] == expected
    for f in found:
        stop = f.reason_code == "stop"
        assert (f.severity is Severity.CRITICAL) == stop and (f.fixes == ()) == stop


def test_find_blocked_tells_loops_from_budget_and_names_escalation() -> None:
    s = Snapshot(
        T0,
        (),
        blocked=(
            issue("attempt budget spent: 3 of 3 runs failed"),
            issue("recovery loop stopped: dispatched 10 times", id="ALI-2"),
            issue("", id="ALI-3"),
        ),
        escalations={"ALI-1": "ali-ceo (ALI-4)"},
    )
    found = find_blocked(s, CONFIG)
    assert kinds(found) == [
        ("issue_blocked", "issue:ALI-1", "attempts"),
        ("recovery_loop", "issue:ALI-2", "loop"),
        ("issue_blocked", "issue:ALI-3", "blocked"),
    ]
    assert found[0].detail.endswith("· escalated to ali-ceo (ALI-4)")
    assert found[2].detail == "blocked without a reason"


def test_auth_signals_expire_and_yield_to_a_successful_call() -> None:
    signals = {"ali-ceo": AuthSignal("bad_signature", T0)}
    fresh = Snapshot(T0 + 60, (agent(last_seen_at=T0 - 5),), auth_signals=signals)
    assert kinds(find_auth_signals(fresh, CONFIG)) == [
        ("agent_unauthenticated", "agent:ali-ceo", "bad_signature")
    ]
    since = Snapshot(T0 + 60, (agent(last_seen_at=T0 + 30),), auth_signals=signals)
    assert find_auth_signals(since, CONFIG) == []
    assert find_auth_signals(replace(fresh, now=T0 + 3600), CONFIG) == []


def test_evaluate_keeps_one_finding_per_fingerprint() -> None:
    a = agent(status=AgentStatus.UNAUTHENTICATED, reason_code="expired", last_seen_at=0)
    s = Snapshot(T0, (a,), auth_signals={a.id: AuthSignal("unknown_key", T0)})
    assert kinds(evaluate(s, CONFIG)) == [("agent_unauthenticated", "agent:ali-ceo", "expired")]


# -- the runner and the event path ------------------------------------------------------------


@dataclass
class Watch:
    stack: Stack
    book: AlertBook
    outbox: Outbox
    monitors: Monitors
    recovery: Recovery

    @property
    def clock(self) -> ManualClock:
        return self.stack.clock


@pytest.fixture
async def watch(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Watch]:
    config = cfg(tmp_path, alerts={"auto_reset_after": "5m", "auto_reset_max": "20m"})
    async with open_stack(tmp_path, clock, config=config) as stack:
        outbox = Outbox(stack.db, clock, config)
        book = AlertBook(stack.db, clock, config, outbox)
        recovery = Recovery(stack.service, config)
        monitors = Monitors(stack.service, book, CostBook(stack.db, clock), recovery, config, clock)
        unsubscribe = stack.service.events.subscribe(monitors.on_event)
        try:
            yield Watch(stack, book, outbox, monitors, recovery)
        finally:
            unsubscribe()
            await monitors.aclose()


async def sent_rows(w: Watch, kind: str = "alert") -> list[Any]:
    return [r for r in await w.outbox.rows() if r.kind == kind]


async def test_agent_error_fires_from_the_event_repeats_and_resolves(watch: Watch) -> None:
    w = watch
    await break_agent(w.stack.service, "ali-ceo", AgentStatus.ERROR, "run_timed_out")
    await break_agent(w.stack.service, "ali-cto", AgentStatus.ERROR, "run_timed_out")
    await w.monitors.settle()
    [alert] = await w.book.firing()
    assert alert.kind is AlertKind.AGENT_ERROR and len(alert.members) == 2
    assert "auto-reset #1 at 00:05 UTC" in alert.members[0].detail
    w.clock.advance(30)
    assert await w.book.flush() == {"new": 1}
    assert {r.chat for r in await sent_rows(w)} == {str(OWNER), "-1001"}
    for row in await w.outbox.due(10):  # delivered
        await w.outbox.start(row.id)
        await w.outbox.sent(row.id, 1, row.chat)
    # Sticky: without an ack it comes back every repeat_interval until resolved.
    w.clock.advance(4 * 3600)
    assert await w.book.flush() == {"repeat": 1}
    await w.stack.service.reset("ali-ceo", "alice")
    await w.stack.service.reset("ali-cto", "alice")
    await w.monitors.settle()
    assert await w.book.firing() == []
    assert await w.book.flush() == {"resolved": 1}


async def test_auto_reset_backs_off_and_caps(watch: Watch) -> None:
    w = watch
    for expected_wait in (300, 600, 1200, 1200):
        await break_agent(w.stack.service, "ali-qa-1", AgentStatus.ERROR, "boom")
        await w.monitors.settle()
        w.clock.advance(expected_wait - 1)
        assert await w.recovery.auto_reset_due() == []
        w.clock.advance(1)
        assert await w.recovery.auto_reset_due() == ["ali-qa-1"]
        assert (await w.stack.service.agent("ali-qa-1")).status is AgentStatus.IDLE
    await w.recovery.note_success("ali-qa-1")
    assert await w.recovery.schedule() == {}


async def test_monitor_pass_finds_resolves_and_groups(watch: Watch) -> None:
    w = watch
    # Three empty heartbeats in a row make the queue of aliens "empty".
    for _ in range(3):
        for agent_id in ("ali-ceo", "ali-cto"):
            await w.stack.scheduler.heartbeat.beat(agent_id, forced=True)
    findings = await w.monitors.run()
    assert ("queue_empty", "company:aliens", "empty") in kinds(findings)
    [alert] = [a for a in await w.book.firing() if a.kind is AlertKind.QUEUE_EMPTY]
    assert alert.fixes == (Fix.FILE, Fix.PAUSE) and alert.severity is Severity.WARNING
    # Filing an issue ends it at once (event), before the next pass.
    await w.stack.service.file_issue(title="work", assignee="ali-cmo", actor="alice")
    await w.monitors.settle()
    assert [a.kind for a in await w.book.firing()] == []


async def test_stuck_run_is_found_by_the_pass_and_resolved_when_it_ends(watch: Watch) -> None:
    w = watch
    issue = await w.stack.service.file_issue(title="long", assignee="ali-ceo", actor="alice")
    await w.stack.scheduler.drain()
    [live] = await w.stack.service.recent_runs("ali-ceo")
    w.clock.advance(31 * 60)
    await w.monitors.run()
    [alert] = await w.book.firing()
    assert alert.kind is AlertKind.AGENT_STUCK and f"on {issue.id}" in alert.members[0].detail
    await w.stack.service.finish_run(live.id, "ali-ceo", RunOutcome.DONE)
    await w.monitors.settle()
    assert await w.book.firing() == []


async def test_budget_pauses_once_a_month(watch: Watch) -> None:
    w = watch
    issue = await w.stack.service.file_issue(title="x", assignee="ali-cto", actor="alice")
    await w.stack.scheduler.drain()
    [live] = await w.stack.service.recent_runs("ali-cto")
    await w.stack.service.report_usage(
        live.id, "ali-cto", turns=1, input_tokens=10, output_tokens=1, cost=2.5
    )
    findings = await w.monitors.run()
    assert ("budget", "agent:ali-cto", "stop") in kinds(findings)
    agent = await w.stack.service.agent("ali-cto")
    assert (agent.status, agent.reason_code) == (AgentStatus.PAUSED, "budget")
    await w.stack.service.resume("ali-cto", "alice")  # the owner decides to spend more
    await w.monitors.run()
    assert (await w.stack.service.agent("ali-cto")).status is not AgentStatus.PAUSED
    assert [a.kind for a in await w.book.firing()] == [AlertKind.BUDGET]
    assert issue.assignee_id == "ali-cto"


async def test_runtime_failure_blocks_after_budget_alerts_and_escalates(
    tmp_path: Path, clock: ManualClock
) -> None:
    config = cfg(tmp_path)
    failing = raises(AgentFailure("the agent crashed", code="process_failed"))
    async with open_stack(tmp_path, clock, config=config, behaviour=failing) as stack:
        outbox = Outbox(stack.db, clock, config)
        book = AlertBook(stack.db, clock, config, outbox)
        recovery = Recovery(stack.service, config)
        monitors = Monitors(stack.service, book, CostBook(stack.db, clock), recovery, config, clock)
        stack.service.events.subscribe(monitors.on_event)
        try:
            issue = await stack.service.file_issue(title="Ship", assignee="ali-qa-1", actor="a")
            for _ in range(3):
                await stack.scheduler.drain()
                await stack.service.reset("ali-qa-1", "alice")
                clock.advance(3600)
                await recovery.sweep()
                await stack.scheduler.drain()
            await monitors.settle()
            blocked = await stack.service.issue(issue.id)
            assert blocked.status is IssueStatus.BLOCKED
            assert "attempt budget spent: 3 of 3" in blocked.reason
            assert stack.runtimes.calls_for(issue_id=issue.id) == 3
            [alert] = [a for a in await book.firing() if a.kind is AlertKind.ISSUE_BLOCKED]
            detail = alert.members[0].detail
            assert "escalated to ali-cto" in detail  # qa-1 reports to the cto
            [escalation] = await stack.service.inbox("ali-cto")
            assert escalation.title.startswith(f"Blocked: {issue.id}")
            assert "ali-qa-1" in escalation.body or "Ali-Qa-1" in escalation.body
        finally:
            await monitors.aclose()


async def test_api_401s_raise_unauthenticated_grouped(watch: Watch) -> None:
    w = watch
    for agent_id in ("ali-ceo", "ali-cto", "mat-ceo"):
        w.monitors.on_auth_failure(agent_id, "bad_signature")
    w.monitors.on_auth_failure("unknown", "malformed")  # nobody to name: counted, not alerted
    await w.monitors.settle()
    [alert] = await w.book.firing()
    assert alert.cause == "agent_unauthenticated:bad_signature" and len(alert.members) == 3
    assert alert.fixes == (Fix.ROTATE,)
    ack = await w.book.ack(alert.id, "alice")
    assert ack.state is AlertState.ACKNOWLEDGED


def two_of_each(kind: AlertKind) -> Snapshot:
    """A snapshot where exactly two subjects show `kind` with the same cause."""
    late = T0 + 3 * 3600
    pair = ("ali-ceo", "ali-cto")
    if kind in (AlertKind.AGENT_ERROR, AlertKind.AGENT_UNAUTHENTICATED):
        status, code = {
            AlertKind.AGENT_ERROR: (AgentStatus.ERROR, "run_timed_out"),
            AlertKind.AGENT_UNAUTHENTICATED: (AgentStatus.UNAUTHENTICATED, "unknown_key"),
        }[kind]
        return Snapshot(late, tuple(agent(a, status=status, reason_code=code) for a in pair))
    if kind is AlertKind.RUNTIME_UNREACHABLE:
        down = {
            a: RuntimeCheck(a, "aliens", False, "the agent at http://gw/", "refused", "", "x")
            for a in pair
        }
        return Snapshot(late, tuple(agent(a) for a in pair), runtime_failures=down)
    if kind is AlertKind.AGENT_STUCK:
        runs = tuple(run(a, id=a) for a in pair)
        return Snapshot(late, tuple(agent(a, status=AgentStatus.RUNNING) for a in pair), runs)
    if kind is AlertKind.AGENT_SILENT:
        return Snapshot(late, tuple(agent(a, next_heartbeat_at=T0) for a in pair))
    if kind is AlertKind.QUEUE_EMPTY:
        return Snapshot(late, (), empty_queues={"aliens": (5, T0), "matrix": (9, T0)})
    if kind is AlertKind.BUDGET:
        return Snapshot(
            late, (agent("ali-cto"),), spend={"company:aliens": 9, "agent:ali-cto": 1.9}
        )
    if kind is AlertKind.ROUTINE_MISSED:
        slipped = tuple(
            routine(n, late="missed 2 due times while fleetbot was down") for n in (1, 2)
        )
        return Snapshot(late, (), late_routines=slipped)
    if kind is AlertKind.SPEND_VELOCITY:
        fast = tuple(Velocity(a, 12.0, 900_000, 0.5, 40_000.0, 30) for a in pair)
        return Snapshot(late, tuple(agent(a) for a in pair), runaways=fast)
    reason = "recovery loop stopped: x" if kind is AlertKind.RECOVERY_LOOP else "attempt budget"
    return Snapshot(late, (), blocked=(issue(reason), issue(reason, id="ALI-2")))


# DELIVERY is what older versions raised; it is only read, never raised, now. QUESTION is one
# alert per question, never grouped (its lifecycle: tests/core/test_questions_alerts.py).
@pytest.mark.parametrize(
    "kind", [k for k in AlertKind if k not in (AlertKind.DELIVERY, AlertKind.QUESTION)]
)
async def test_each_kind_fires_groups_repeats_acks_mutes_resolves(
    kind: AlertKind, tmp_path: Path
) -> None:
    config = cfg(tmp_path)
    snap = two_of_each(kind)
    clock = ManualClock(snap.now)
    async with database_for(config.storage) as db:
        service = FleetService(db, config, clock)
        await service.sync_config()
        outbox = Outbox(db, clock, config)
        book = AlertBook(db, clock, config, outbox)

        async def deliver() -> None:
            for n, row in enumerate(await outbox.due(100)):
                await outbox.start(row.id)
                await outbox.sent(row.id, n + 1, row.chat)

        findings = evaluate(snap, config)
        assert {f.kind for f in findings} == {kind} and len(findings) == 2
        await book.reconcile(findings, frozenset(AlertKind), clock.now())  # fires…
        [alert] = await book.firing()  # …grouped: one alert, two members
        assert len(alert.members) == 2
        assert await book.flush() == {}  # held for group_wait
        clock.advance(30)
        assert await book.flush() == {"new": 1}
        await deliver()
        clock.advance(4 * 3600)
        later = [f for f in evaluate(replace(snap, now=clock.now()), config) if f.kind is kind]
        await book.reconcile(later, frozenset({kind}), clock.now())  # still there: no change
        assert await book.flush() == {"repeat": 1}  # reminded while unacknowledged
        await deliver()
        await book.ack(alert.id, "alice")
        assert await book.flush() == {"update": 1}
        clock.advance(8 * 3600)
        assert await book.flush() == {}  # acknowledged: no reminders
        mute = await book.mute(str(alert.id), clock.now() + 3600, "alice", "on it")
        assert (await book.get(alert.id)).state is AlertState.MUTED
        await book.unmute(f"m{mute.id}", "alice")
        assert (await book.get(alert.id)).state is AlertState.ACKNOWLEDGED
        await book.reconcile([], MONITORED, clock.now())  # the state is healthy again
        assert (await book.get(alert.id)).state is AlertState.RESOLVED
        await book.flush()
        assert (await book.get(alert.id)).resolved_at == clock.now()
        edits = [r for r in await outbox.rows() if r.kind == "alert_edit"]
        assert edits  # the resolution edits the messages in place


async def test_fleet_wires_guard_events_summaries_and_jobs(
    tmp_path: Path, clock: ManualClock
) -> None:
    config = cfg(tmp_path)
    make_auth(config, clock)
    async with Fleet(config, {}, clock, serve_api=False, periodic=False) as fleet:
        # A token that claims ali-ceo but was signed with some other secret: a 401 to the API,
        # and nothing else: only a verified signature may name an agent (issue 11).
        forged = jwt.encode({"sub": "ali-ceo", "kid": "nope"}, "x" * 32, algorithm="HS256")
        with pytest.raises(TokenInvalid):
            await fleet.guard.authenticate(f"Bearer {forged}")
        await fleet.monitors.settle()
        assert await fleet.alerts.firing() == []
        # ali-ceo's own token, expired: that one is the agent's problem, and is pushed.
        ceo = await fleet.service.agent("ali-ceo")
        expired = fleet.auth.authority.issue(ceo, clock.now() - 7200, 3600)
        with pytest.raises(TokenInvalid):
            await fleet.guard.authenticate(f"Bearer {expired}")
        await fleet.monitors.settle()
        [alert] = await fleet.alerts.firing()
        assert alert.kind is AlertKind.AGENT_UNAUTHENTICATED
        assert [m.agent_id for m in alert.members] == ["ali-ceo"]
        agent = await fleet.service.agent("ali-ceo")
        assert agent.status is AgentStatus.IDLE  # a stranger's junk cannot knock it out
        # A summary an agent posts is relayed to its team chat through the outbox.
        await fleet.service.post_summary(agent, "done for today")
        await fleet.monitors.settle()
        [row] = [r for r in await fleet.outbox.rows() if r.kind == "summary"]
        assert row.chat == "-1001"
