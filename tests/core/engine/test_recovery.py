"""The field notes' recovery bug, replayed: finished work is never dispatched again.

Paperclip's recovery re-queued done and cancelled issues (84+ identical re-runs). Here every
re-dispatch is a compare-and-set in the transaction that opens the run, recovery's own writes
are compare-and-sets, attempts are budgeted, and a loop guard stops what slips through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stack_helpers import Stack, config_data, finishes, open_stack, raises

from core.alerting.book import AlertBook, AlertKind
from core.alerting.outbox import Outbox
from core.alerting.watchdog import Monitors
from core.clock import ManualClock
from core.config import Config, parse_config
from core.engine.recovery import Recovery, auto_reset_delay, reports_chain
from core.errors import AgentFailure
from core.models import Agent, AgentStatus, IssueStatus, RunOutcome, RunStatus
from core.reports.costs import CostBook
from core.runtimes.base import Dispatch, DispatchResult


def config(tmp_path: Path, **monitors: Any) -> Config:
    data = config_data(tmp_path, max_attempts=3, retry_backoff="1m")
    data["monitors"] = monitors
    return parse_config(data, "test")


async def finish_issue(stack: Stack, agent_id: str, outcome: RunOutcome) -> str:
    """File an issue for `agent_id`, dispatch it and end the run with `outcome`."""
    issue = await stack.service.file_issue(title="heartbeat", assignee=agent_id, actor="t")
    await stack.scheduler.drain()
    [live] = [r for r in await stack.service.recent_runs(agent_id) if r.issue_id == issue.id]
    await stack.service.finish_run(live.id, agent_id, outcome)
    return issue.id


async def stale_lease(stack: Stack, issue_id: str) -> None:
    """The state Paperclip's recovery fed on: a lease that expired, a retry time in the past."""
    now = stack.clock.now()
    async with stack.db.write() as conn:
        await conn.execute(
            "UPDATE issues SET lease_run_id = 'gone', lease_until = ?, not_before = ? WHERE id = ?",
            (now - 600, now - 600, issue_id),
        )


async def test_done_or_cancelled_issue_with_expired_lease_is_never_dispatched(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with open_stack(tmp_path, clock, config=config(tmp_path)) as stack:
        recovery = Recovery(stack.service, stack.config)
        done = await finish_issue(stack, "ali-ceo", RunOutcome.DONE)
        cancelled = await stack.service.file_issue(title="old", assignee="ali-cto", actor="t")
        await stack.scheduler.drain()
        await stack.service.move(cancelled.id, IssueStatus.CANCELLED, "owner")
        before = len(stack.runtimes.calls)
        for issue_id in (done, cancelled.id):
            await stale_lease(stack, issue_id)
        report = await recovery.sweep()
        assert report.leases_cleared == 2 and report.woken == ()
        for agent_id in ("ali-ceo", "ali-cto"):
            await stack.scheduler.heartbeat.beat(agent_id, forced=True)
        await stack.scheduler.drain()
        assert len(stack.runtimes.calls) == before
        assert (await stack.service.issue(done)).status is IssueStatus.DONE
        assert (await stack.service.issue(cancelled.id)).status is IssueStatus.CANCELLED


async def test_status_change_between_read_and_write_wins(
    tmp_path: Path, clock: ManualClock
) -> None:
    behaviour = finishes(DispatchResult(finished=True, outcome=RunOutcome.FAILED))
    async with open_stack(tmp_path, clock, config=config(tmp_path), behaviour=behaviour) as stack:
        recovery = Recovery(stack.service, stack.config)
        issue = await stack.service.file_issue(title="flaky", assignee="ali-ceo", actor="t")
        await stack.scheduler.drain()  # one failed run: the issue waits out its backoff
        assert stack.runtimes.calls_for(issue_id=issue.id) == 1
        clock.advance(120)
        candidates = await recovery.retry_candidates(clock.now())
        assert [c.issue_id for c in candidates] == [issue.id]
        # The agent (or the owner) closes it after recovery read it, before it writes.
        await stack.service.move(issue.id, IssueStatus.DONE, "owner")
        assert await recovery.requeue(candidates) == []
        await stack.scheduler.drain()
        assert stack.runtimes.calls_for(issue_id=issue.id) == 1

        # The same race one step later: the dispatch itself re-checks in its transaction,
        # even when handed an issue read while it was still open.
        second = await stack.service.file_issue(title="again", assignee="ali-cto", actor="t")
        stale = await stack.service.issue(second.id)
        await stack.service.move(second.id, IssueStatus.CANCELLED, "owner")
        agent = await stack.service.agent("ali-cto")
        async with stack.db.write() as conn:
            assert await stack.service.runs.open(conn, agent, stale, clock.now()) is None


async def test_a_thousand_recovery_ticks_dispatch_no_terminal_issue(
    tmp_path: Path, clock: ManualClock
) -> None:
    flaky_runs: list[str] = []

    async def behaviour(job: Dispatch) -> DispatchResult:
        # The control issue fails its first run, so recovery has real work to re-dispatch.
        if job.issue["title"] == "flaky" and not flaky_runs:
            flaky_runs.append(job.run_id)
            return DispatchResult(finished=True, outcome=RunOutcome.FAILED)
        return DispatchResult(finished=True, outcome=RunOutcome.DONE)

    async with open_stack(tmp_path, clock, config=config(tmp_path), behaviour=behaviour) as stack:
        recovery = Recovery(stack.service, stack.config)
        terminal = []
        for agent_id in ("ali-ceo", "ali-cto", "mat-ceo"):
            terminal.append(await finish_issue(stack, agent_id, RunOutcome.DONE))
        cancelled = await stack.service.file_issue(title="dropped", assignee="ali-cmo", actor="t")
        await stack.service.move(cancelled.id, IssueStatus.CANCELLED, "owner")
        terminal.append(cancelled.id)
        await stack.scheduler.drain()
        before = {i: stack.runtimes.calls_for(issue_id=i) for i in terminal}
        control = await stack.service.file_issue(title="flaky", assignee="ali-qa-1", actor="t")
        await stack.scheduler.drain()
        woken = 0
        for tick in range(1000):
            if tick % 100 == 0:  # the bad state keeps coming back, as in the field
                for issue_id in terminal:
                    await stale_lease(stack, issue_id)
            clock.advance(60)
            woken += len((await recovery.sweep()).woken)
            await stack.scheduler.tick()
            await stack.scheduler.drain()
        after = {i: stack.runtimes.calls_for(issue_id=i) for i in terminal}
        assert after == before
        # The control: recovery did re-dispatch the open issue, once, and it got done.
        assert woken == 1 and stack.runtimes.calls_for(issue_id=control.id) == 2
        assert (await stack.service.issue(control.id)).status is IssueStatus.DONE
        for issue_id in terminal:
            assert (await stack.service.issue(issue_id)).status.terminal


async def test_spent_attempt_budget_blocks_alerts_and_escalates_to_the_owner(
    tmp_path: Path, clock: ManualClock
) -> None:
    cfg = config(tmp_path)
    failing = raises(AgentFailure("connection refused", code="runtime_unreachable"))
    async with open_stack(tmp_path, clock, config=cfg, behaviour=failing) as stack:
        outbox = Outbox(stack.db, clock, cfg)
        book = AlertBook(stack.db, clock, cfg, outbox)
        recovery = Recovery(stack.service, cfg)
        monitors = Monitors(stack.service, book, CostBook(stack.db, clock), recovery, cfg, clock)
        stack.service.events.subscribe(monitors.on_event)
        try:
            issue = await stack.service.file_issue(title="Top", assignee="ali-ceo", actor="t")
            waits = []
            for _ in range(3):
                await stack.scheduler.drain()
                current = await stack.service.issue(issue.id)
                if current.not_before is not None:
                    waits.append(current.not_before - clock.now())
                await stack.service.reset("ali-ceo", "owner")
                clock.advance(600)
                await recovery.sweep()
            await stack.scheduler.drain()
            await monitors.settle()
            blocked = await stack.service.issue(issue.id)
            assert blocked.status is IssueStatus.BLOCKED and blocked.attempts == 3
            assert waits[:2] == [60, 120]  # backoff doubles between attempts
            alerts = {a.kind: a for a in await book.firing()}
            assert "escalated to owner" in alerts[AlertKind.ISSUE_BLOCKED].members[0].detail
            # No RuntimeWatch here to probe the runtime: the failed run is an agent_error with
            # its reason (resolved by each reset); test_runtime_check covers the probed case.
            errors = [a for a in await book.recent(50) if a.kind is AlertKind.AGENT_ERROR]
            assert errors and errors[0].members[0].agent_id == "ali-ceo"
            assert errors[0].cause == "agent_error:runtime_unreachable"
            assert stack.runtimes.calls_for(issue_id=issue.id) == 3
        finally:
            await monitors.aclose()


async def test_cancel_is_not_a_failure(tmp_path: Path, clock: ManualClock) -> None:
    async with open_stack(tmp_path, clock, config=config(tmp_path)) as stack:
        issue = await stack.service.file_issue(title="x", assignee="ali-ceo", actor="t")
        await stack.scheduler.drain()
        [live] = await stack.service.recent_runs("ali-ceo")
        assert (await stack.service.issue(issue.id)).attempts == 1
        await stack.service.runs.cancel(live.id, "stopped by the owner")
        after = await stack.service.issue(issue.id)
        assert (after.attempts, after.not_before, after.lease_run_id) == (0, None, None)
        assert (await stack.service.agent("ali-ceo")).status is AgentStatus.IDLE
        [ended] = await stack.service.recent_runs("ali-ceo")
        assert ended.status is RunStatus.CANCELLED


async def test_recovery_loop_guard_stops_and_alerts(tmp_path: Path, clock: ManualClock) -> None:
    data = config_data(tmp_path, max_attempts=100, retry_backoff="1s")
    data["monitors"] = {"recovery_loop_dispatches": 4, "recovery_loop_window": "1h"}
    cfg = parse_config(data, "test")
    behaviour = finishes(DispatchResult(finished=True, outcome=RunOutcome.FAILED))
    async with open_stack(tmp_path, clock, config=cfg, behaviour=behaviour) as stack:
        recovery = Recovery(stack.service, cfg)
        issue = await stack.service.file_issue(title="loops", assignee="ali-ceo", actor="t")
        for _ in range(10):
            await stack.scheduler.drain()
            clock.advance(30)
            await recovery.sweep()
        await stack.scheduler.drain()
        assert stack.runtimes.calls_for(issue_id=issue.id) == 4
        stopped = await stack.service.issue(issue.id)
        assert stopped.status is IssueStatus.BLOCKED
        assert stopped.reason.startswith("recovery loop stopped: dispatched 4 times")
        outbox = Outbox(stack.db, clock, cfg)
        book = AlertBook(stack.db, clock, cfg, outbox)
        monitors = Monitors(stack.service, book, CostBook(stack.db, clock), recovery, cfg, clock)
        await monitors.run()
        [alert] = await book.firing()
        assert alert.kind is AlertKind.RECOVERY_LOOP and alert.members[0].issue_id == issue.id
        row = await stack.db.fetchone("SELECT dispatches FROM recovery_loops")
        assert row is not None and row[0] == 4


def test_reports_chain_stops_at_cycles_and_unknowns() -> None:
    def a(agent_id: str, boss: str | None) -> Agent:
        return Agent(
            agent_id, "c", agent_id, "r", boss, AgentStatus.IDLE, "", "", 0, "m", 1, 1, 1, (), 1, 1
        )

    agents = {x.id: x for x in [a("qa", "cto"), a("cto", "ceo"), a("ceo", None)]}
    assert [x.id for x in reports_chain("qa", agents)] == ["cto", "ceo"]
    loop = {x.id: x for x in [a("x", "y"), a("y", "x")]}
    assert [x.id for x in reports_chain("x", loop)] == ["y"]
    assert reports_chain("nobody", agents) == [] and reports_chain(None, agents) == []


def test_auto_reset_delay_doubles_and_caps() -> None:
    assert [auto_reset_delay(n, 60, 600) for n in range(6)] == [60, 120, 240, 480, 600, 600]
    assert auto_reset_delay(10_000, 60, 600) == 600


async def test_release_is_compare_and_set_on_the_lease(tmp_path: Path, clock: ManualClock) -> None:
    async with open_stack(tmp_path, clock, config=config(tmp_path)) as stack:
        issue = await stack.service.file_issue(title="x", assignee="ali-ceo", actor="t")
        await stack.scheduler.drain()
        async with stack.db.write() as conn:
            # A run that does not hold the lease releases nothing.
            assert (
                await stack.service.runs.release(conn, issue.id, "someone-else", clock.now())
                is None
            )
