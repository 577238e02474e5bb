"""The scheduler end to end on a real store: wake-ups, timeouts, failures, caps, budgets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from stack_helpers import Stack, finishes, make_config, open_stack, raises

from core.clock import ManualClock
from core.config import SimulatedRuntime
from core.engine import scheduler as scheduler_module
from core.errors import AgentUnreachable, RunNotActive, TurnCapExceeded
from core.events import RunEnded
from core.models import AgentStatus, IssueStatus, RunOutcome, RunStatus
from core.runtimes.base import Dispatch, DispatchResult, TurnUsage
from core.runtimes.simulated import SimulatedAgentRuntime

FOUR_HOURS = 4 * 3600


async def _only_run(s: Stack, agent_id: str) -> str:
    (run,) = await s.service.recent_runs(agent_id)
    return run.id


async def test_filing_wakes_the_agent_at_once(stack: Stack) -> None:
    issue = await stack.service.file_issue(title="urgent", assignee="cto@matrix", actor="o")
    await stack.scheduler.drain()
    (job,) = stack.runtimes.calls
    assert (job.agent_id, job.issue["id"], job.issue["title"]) == ("mat-cto", issue.id, "urgent")
    assert job.api_url.startswith("http://127.0.0.1")
    assert job.token == "", "no auth configured: no token handed out"
    assert job.deadline == stack.clock.now() + 30 * 60
    assert (await stack.service.agent("mat-cto")).status is AgentStatus.RUNNING


async def test_assigning_wakes_the_new_assignee(stack: Stack) -> None:
    await stack.service.pause("ali-qa-1", actor="o")
    issue = await stack.service.file_issue(title="t", assignee="ali-qa-1", actor="o")
    await stack.scheduler.drain()
    assert stack.runtimes.calls == []
    await stack.service.assign(issue.id, "ali-qa-2", actor="o")
    await stack.scheduler.drain()
    assert [j.agent_id for j in stack.runtimes.calls] == ["ali-qa-2"]


async def test_no_wake_on_assign_waits_for_the_interval(tmp_path: Path, clock: ManualClock) -> None:
    async with open_stack(tmp_path, clock, wake_on_assign=False) as s:
        await s.service.file_issue(title="later", assignee="ali-cto", actor="o")
        await s.scheduler.drain()
        assert s.runtimes.calls == []
        clock.advance(FOUR_HOURS)
        await s.scheduler.tick()
        await s.scheduler.drain()
        assert s.runtimes.calls_for(agent_id="ali-cto") == 1


async def test_explicit_wake_still_works_without_wake_on_assign(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with open_stack(tmp_path, clock, wake_on_assign=False) as s:
        await s.service.file_issue(title="now", assignee="ali-cto", actor="o")
        await s.service.wake("ali-cto", actor="o")
        await s.scheduler.drain()
        assert s.runtimes.calls_for(agent_id="ali-cto") == 1


async def test_run_past_its_deadline_times_out(stack: Stack) -> None:
    issue = await stack.service.file_issue(title="slow", assignee="ali-cto", actor="o")
    await stack.scheduler.drain()
    run_id = await _only_run(stack, "ali-cto")
    stack.clock.advance(30 * 60)  # exactly at the deadline: not yet past it
    assert (await stack.scheduler.tick()).timed_out == 0
    stack.clock.advance(1)
    assert (await stack.scheduler.tick()).timed_out == 1
    run = await stack.service.runs.get(run_id)
    assert (run.status, run.reason_code) == (RunStatus.TIMED_OUT, "run_timed_out")
    assert run.ended_at == stack.clock.now()
    agent = await stack.service.agent("ali-cto")
    assert (agent.status, agent.reason_code) == (AgentStatus.ERROR, "run_timed_out")
    assert "deadline" in agent.reason
    after = await stack.service.issue(issue.id)
    assert (after.lease_run_id, after.lease_until) == (None, None)
    assert after.status is IssueStatus.IN_PROGRESS and after.attempts == 1
    assert after.not_before == stack.clock.now() + 60, "retry after the backoff"
    assert (await stack.scheduler.tick()).timed_out == 0, "a run times out once"
    ended = [e for e in stack.events if isinstance(e, RunEnded)]
    assert [(e.run_id, e.status) for e in ended] == [(run_id, RunStatus.TIMED_OUT)]


async def test_runtime_failure_fails_the_run_with_its_reason(
    tmp_path: Path, clock: ManualClock
) -> None:
    failure = AgentUnreachable(
        "cannot connect to http://10.0.0.7:9000/run (connection refused); is the agent up?"
    )
    async with open_stack(tmp_path, clock, behaviour=raises(failure)) as s:
        issue = await s.service.file_issue(title="t", assignee="ali-cto", actor="o")
        await s.scheduler.drain()
        run = await s.service.runs.get(await _only_run(s, "ali-cto"))
        assert (run.status, run.reason, run.reason_code) == (
            RunStatus.FAILED,
            failure.message,
            "runtime_unreachable",
        )
        agent = await s.service.agent("ali-cto")
        assert (agent.status, agent.reason, agent.reason_code) == (
            AgentStatus.ERROR,
            failure.message,
            "runtime_unreachable",
        )
        after = await s.service.issue(issue.id)
        assert after.lease_run_id is None and after.status is IssueStatus.IN_PROGRESS
        # An agent in error is not woken again until someone resets it.
        for _ in range(3):
            clock.advance(FOUR_HOURS)
            await s.scheduler.tick()
            await s.scheduler.drain()
        assert s.runtimes.calls_for(agent_id="ali-cto") == 1
        await s.service.reset("ali-cto", actor="o")
        await s.scheduler.drain()
        assert s.runtimes.calls_for(agent_id="ali-cto") == 2


async def test_a_crashing_runtime_is_a_failure_not_a_crash(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with open_stack(tmp_path, clock, behaviour=raises(KeyError("oops"))) as s:
        await s.service.file_issue(title="t", assignee="ali-cto", actor="o")
        await s.scheduler.drain()
        run = await s.service.runs.get(await _only_run(s, "ali-cto"))
        assert (run.status, run.reason_code) == (RunStatus.FAILED, "dispatch_crashed")
        assert "KeyError" in run.reason


async def test_finished_without_outcome_goes_to_review(tmp_path: Path, clock: ManualClock) -> None:
    behaviour = finishes(DispatchResult(finished=True))
    async with open_stack(tmp_path, clock, behaviour=behaviour) as s:
        issue = await s.service.file_issue(title="t", assignee="ali-cto", actor="o")
        await s.scheduler.drain()
        run = await s.service.runs.get(await _only_run(s, "ali-cto"))
        assert (run.status, run.reason_code) == (RunStatus.SUCCEEDED, "exited")
        after = await s.service.issue(issue.id)
        assert (after.status, after.lease_run_id) == (IssueStatus.IN_REVIEW, None)
        assert (await s.service.agent("ali-cto")).status is AgentStatus.IDLE


@pytest.mark.parametrize(
    ("outcome", "issue_status", "run_status"),
    [
        (RunOutcome.DONE, IssueStatus.DONE, RunStatus.SUCCEEDED),
        (RunOutcome.BLOCKED, IssueStatus.BLOCKED, RunStatus.SUCCEEDED),
        (RunOutcome.FAILED, IssueStatus.IN_PROGRESS, RunStatus.FAILED),
    ],
)
async def test_finish_moves_the_issue(
    stack: Stack, outcome: RunOutcome, issue_status: IssueStatus, run_status: RunStatus
) -> None:
    issue = await stack.service.file_issue(title="t", assignee="ali-cto", actor="o")
    await stack.scheduler.drain()
    run_id = await _only_run(stack, "ali-cto")
    run = await stack.service.finish_run(run_id, "ali-cto", outcome, "needs the DB password")
    assert run.status is run_status
    after = await stack.service.issue(issue.id)
    assert (after.status, after.lease_run_id) == (issue_status, None)
    if outcome is RunOutcome.BLOCKED:
        assert after.reason == "needs the DB password"
    if outcome is RunOutcome.FAILED:
        assert after.not_before == stack.clock.now() + 60
    assert (await stack.service.agent("ali-cto")).status is AgentStatus.IDLE


class _HangingAgent(SimulatedAgentRuntime):
    """The real simulated agent with hang_rate=1, noting whether it was cancelled."""

    def __init__(self) -> None:
        super().__init__(SimulatedRuntime(kind="simulated", latency=0, hang_rate=1), _NoReporter())
        self.started = asyncio.Event()
        self.cancelled = False

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        self.started.set()
        try:
            return await super().dispatch(job)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class _NoReporter:
    async def report_usage(self, *a: object, **k: object) -> object:
        raise AssertionError("a hanging agent reports nothing")

    async def finish_run(self, *a: object, **k: object) -> object:
        raise AssertionError("a hanging agent reports nothing")


async def test_turn_cap_stops_the_run_and_cancels_its_dispatch(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with open_stack(tmp_path, clock) as s:
        agent_rt = _HangingAgent()
        s.scheduler.runtimes = lambda agent: agent_rt
        issue = await s.service.file_issue(title="t", assignee="ali-cto", actor="o")
        await asyncio.wait_for(agent_rt.started.wait(), 5)
        run_id = await _only_run(s, "ali-cto")
        run = await s.service.report_usage(
            run_id, "ali-cto", turns=5, input_tokens=10, output_tokens=5, cost=0.1
        )
        assert (run.status, run.turns) == (RunStatus.RUNNING, 5), "the cap itself is allowed"
        with pytest.raises(TurnCapExceeded, match="max_turns_per_run"):
            await s.service.report_usage(
                run_id, "ali-cto", turns=6, input_tokens=20, output_tokens=9, cost=0.2
            )
        await asyncio.wait_for(s.scheduler.drain(), 5)
        assert agent_rt.cancelled, "the hanging dispatch was cancelled"
        run = await s.service.runs.get(run_id)
        assert (run.status, run.reason_code, run.turns) == (
            RunStatus.FAILED,
            "max_turns_exceeded",
            6,
        )
        assert (await s.service.agent("ali-cto")).status is AgentStatus.IDLE
        assert (await s.service.issue(issue.id)).lease_run_id is None


async def _finish_from_the_api(s: Stack, job: Dispatch) -> None:
    """The agent's `fleetbot agent finish`: a request the API serves in a task of its own."""
    finish = s.service.finish_run(job.run_id, job.agent_id, RunOutcome.DONE, "shipped")
    await asyncio.create_task(finish)


async def test_a_turn_winds_down_after_the_agent_finishes_and_its_usage_counts(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A CLI agent calls finish, then says its last reply and prints what the turn cost: the
    finish must not kill it, or that cost is never recorded."""
    async with open_stack(tmp_path, clock) as s:
        stopped: list[str] = []

        async def finish_then_report(job: Dispatch) -> DispatchResult:
            await _finish_from_the_api(s, job)
            try:
                await asyncio.sleep(0.05)  # the CLI's last model call
            except asyncio.CancelledError:
                stopped.append(job.run_id)
                raise
            return DispatchResult(finished=True, usage=TurnUsage(3, 1200, 80, 0.02, "cli-model"))

        s.runtimes.behaviour = finish_then_report
        issue = await s.service.file_issue(title="t", assignee="ali-cto", actor="o")
        await asyncio.wait_for(s.scheduler.drain(), 5)
        run = await s.service.runs.get(await _only_run(s, "ali-cto"))
        assert stopped == []
        assert (run.status, run.reason_code, run.summary) == (
            RunStatus.SUCCEEDED,
            "done",
            "shipped",
        )
        assert (run.turns, run.input_tokens, run.output_tokens, run.cost) == (3, 1200, 80, 0.02)
        assert (await s.service.issue(issue.id)).status is IssueStatus.DONE


async def test_a_turn_that_goes_on_after_finish_is_stopped_after_the_wrap_up(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "WRAP_UP", 0.2)
    async with open_stack(tmp_path, clock) as s:
        stopped = asyncio.Event()

        async def finish_then_hang(job: Dispatch) -> DispatchResult:
            await _finish_from_the_api(s, job)
            try:
                await asyncio.Event().wait()
            finally:
                stopped.set()
            raise AssertionError("unreachable")

        s.runtimes.behaviour = finish_then_hang
        await s.service.file_issue(title="t", assignee="ali-cto", actor="o")
        await asyncio.wait_for(s.scheduler.drain(), 5)
        assert stopped.is_set(), "the turn outlived the wrap-up and was stopped"
        run = await s.service.runs.get(await _only_run(s, "ali-cto"))
        assert (run.status, run.reason_code) == (RunStatus.SUCCEEDED, "done")


async def test_work_for_an_agent_winding_down_waits_for_its_turn_to_end(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One turn per agent at a time: an issue filed (and its wake) while the agent's finished
    run still winds down starts only once that turn has ended."""
    monkeypatch.setattr(scheduler_module, "WRAP_UP", 0.3)
    async with open_stack(tmp_path, clock) as s:
        log: list[str] = []
        finished = asyncio.Event()

        async def behave(job: Dispatch) -> DispatchResult:
            log.append(f"start {job.issue_id}")
            if job.issue_id != first.id:
                return DispatchResult(finished=True)
            await _finish_from_the_api(s, job)
            finished.set()
            try:
                await asyncio.Event().wait()
            finally:
                log.append(f"end {job.issue_id}")
            raise AssertionError("unreachable")

        s.runtimes.behaviour = behave
        first = await s.service.file_issue(title="one", assignee="ali-cto", actor="o")
        await asyncio.wait_for(finished.wait(), 5)
        second = await s.service.file_issue(title="two", assignee="ali-cto", actor="o")
        await s.scheduler.tick()  # a sweep meanwhile skips the agent
        await asyncio.wait_for(s.scheduler.drain(), 5)
        assert log == [f"start {first.id}", f"end {first.id}", f"start {second.id}"]
        assert (await s.service.issue(second.id)).status is IssueStatus.IN_REVIEW


async def test_attempt_budget_blocks_the_issue_for_good(tmp_path: Path, clock: ManualClock) -> None:
    behaviour = finishes(DispatchResult(finished=True, outcome=RunOutcome.FAILED, summary="no"))
    async with open_stack(tmp_path, clock, behaviour=behaviour) as s:
        issue = await s.service.file_issue(title="doomed", assignee="ali-cto", actor="o")
        await s.scheduler.drain()
        for _ in range(200):
            clock.advance(15 * 60)
            await s.scheduler.tick()
            await s.scheduler.drain()
        assert s.runtimes.calls_for(issue_id=issue.id) == 3
        after = await s.service.issue(issue.id)
        assert (after.status, after.attempts) == (IssueStatus.BLOCKED, 3)
        assert "attempt budget spent" in after.reason and "3 of 3" in after.reason
        runs = await s.service.recent_runs("ali-cto", limit=50)
        assert [r.status for r in runs] == [RunStatus.FAILED] * 3
        # Retrying from blocked is the owner's call, and gives a fresh budget.
        await s.service.move(issue.id, IssueStatus.TODO, actor="owner")
        await s.scheduler.drain()
        assert s.runtimes.calls_for(issue_id=issue.id) == 4


async def test_runtime_failures_also_spend_the_budget(tmp_path: Path, clock: ManualClock) -> None:
    async with open_stack(tmp_path, clock, behaviour=raises(AgentUnreachable("down"))) as s:
        issue = await s.service.file_issue(title="t", assignee="ali-cto", actor="o")
        await s.scheduler.drain()
        for _ in range(2):
            clock.advance(FOUR_HOURS)
            await s.service.reset("ali-cto", actor="o")
            await s.scheduler.drain()
        after = await s.service.issue(issue.id)
        assert (after.status, after.attempts) == (IssueStatus.BLOCKED, 3)
        clock.advance(FOUR_HOURS)
        await s.service.reset("ali-cto", actor="o")
        await s.scheduler.drain()
        assert s.runtimes.calls_for(issue_id=issue.id) == 3


@pytest.mark.parametrize("final", [IssueStatus.DONE, IssueStatus.CANCELLED])
async def test_finished_work_is_never_dispatched_again(
    tmp_path: Path, clock: ManualClock, final: IssueStatus
) -> None:
    async with open_stack(tmp_path, clock) as s:
        issue = await s.service.file_issue(title="t", assignee="ali-cto", actor="o")
        await s.scheduler.drain()
        run_id = await _only_run(s, "ali-cto")
        # The owner closes it under the live run; the runtime never reports back.
        await s.service.move(issue.id, final, actor="owner")
        assert (await s.service.runs.get(run_id)).status is RunStatus.CANCELLED
        assert (await s.service.agent("ali-cto")).status is AgentStatus.IDLE
        for _ in range(200):
            clock.advance(30 * 60)  # leases and backoffs expire many times over
            await s.scheduler.tick()
            await s.scheduler.drain()
        assert s.runtimes.calls_for(issue_id=issue.id) == 1
        after = await s.service.issue(issue.id)
        assert (after.status, after.attempts) == (final, 1)
        # A late report from the old run changes nothing.
        with pytest.raises(RunNotActive, match="already ended"):
            await s.service.finish_run(run_id, "ali-cto", RunOutcome.FAILED, "late")
        assert (await s.service.issue(issue.id)).status is final


async def test_terminal_issue_with_a_stale_lease_is_not_redispatched(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Even if a lease were left behind on finished work (a crash, an old bug), no sweep may
    pick it up once the lease expires: the status check and the lease are one compare-and-set."""
    async with open_stack(tmp_path, clock, wake_on_assign=False) as s:
        done = await s.service.file_issue(title="done", assignee="ali-cto", actor="o")
        cancelled = await s.service.file_issue(title="cancelled", assignee="ali-cto", actor="o")
        async with s.db.write() as conn:
            await conn.execute(
                "UPDATE issues SET status = CASE id WHEN ? THEN 'done' ELSE 'cancelled' END, "
                "lease_run_id = 'gone', lease_until = ?, attempts = 1",
                (done.id, clock.now() + 60),
            )
        for _ in range(200):
            clock.advance(30 * 60)
            await s.scheduler.tick()
            await s.scheduler.drain()
        assert s.runtimes.calls == []
        assert (await s.service.issue(done.id)).status is IssueStatus.DONE
        assert (await s.service.issue(cancelled.id)).status is IssueStatus.CANCELLED


async def test_aclose_is_idempotent_and_stops_listening(tmp_path: Path, clock: ManualClock) -> None:
    async with open_stack(tmp_path, clock) as s:
        await s.scheduler.aclose()
        await s.scheduler.aclose()
        await s.service.file_issue(title="t", assignee="ali-cto", actor="o")
        await s.scheduler.drain()
        assert s.runtimes.calls == []


async def test_periodic_sweep_runs_on_its_own(tmp_path: Path, clock: ManualClock) -> None:
    config = make_config(tmp_path)
    async with open_stack(tmp_path, clock, config=config, wake_on_assign=False, start=False) as s:
        s.scheduler.sweep_interval = 0.05
        await s.scheduler.start(periodic=True)
        await s.service.file_issue(title="t", assignee="ali-cto", actor="o")
        clock.advance(FOUR_HOURS)
        for _ in range(100):
            if s.runtimes.calls:
                break
            await asyncio.sleep(0.02)
        assert s.runtimes.calls_for(agent_id="ali-cto") == 1
