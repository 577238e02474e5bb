"""A run's life in the RunBook: every ending happens once, and only the lease holder moves work."""

from __future__ import annotations

import pytest
from stack_helpers import Stack

from core.errors import (
    Conflict,
    IssueNotFound,
    LeaseConflict,
    NotYourRun,
    RunNotActive,
    RunNotFound,
)
from core.events import RunEnded, SummaryPosted
from core.models import AgentStatus, IssueStatus, Run, RunOutcome, RunStatus
from core.runtimes.base import DispatchResult


async def _dispatch(s: Stack, agent: str = "ali-cto", title: str = "t") -> tuple[str, Run]:
    issue = await s.service.file_issue(title=title, assignee=agent, actor="o")
    await s.scheduler.drain()
    runs = [r for r in await s.service.recent_runs(agent) if r.issue_id == issue.id]
    assert len(runs) == 1
    return issue.id, runs[0]


async def test_finish_is_idempotent_and_final(stack: Stack) -> None:
    issue_id, run = await _dispatch(stack)
    first = await stack.service.finish_run(run.id, "ali-cto", RunOutcome.DONE, "shipped")
    stack.clock.advance(10)
    again = await stack.service.finish_run(run.id, "ali-cto", RunOutcome.DONE, "shipped")
    assert again == first and again.ended_at == first.ended_at, "a retried finish changes nothing"
    with pytest.raises(RunNotActive, match="already ended"):
        await stack.service.finish_run(run.id, "ali-cto", RunOutcome.FAILED, "oops")
    with pytest.raises(RunNotActive):
        await stack.service.report_usage(
            run.id, "ali-cto", turns=1, input_tokens=1, output_tokens=1, cost=0
        )
    assert (await stack.service.issue(issue_id)).status is IssueStatus.DONE
    ended = [e for e in stack.events if isinstance(e, RunEnded)]
    assert len(ended) == 1 and ended[0].summary == "shipped"
    posted = [e for e in stack.events if isinstance(e, SummaryPosted)]
    assert [(p.agent_id, p.issue_id, p.source) for p in posted] == [("ali-cto", issue_id, "run")]
    body = await stack.db.scalar("SELECT body FROM summaries WHERE run_id = ?", (run.id,))
    assert body == "shipped"


async def test_runs_belong_to_their_agent(stack: Stack) -> None:
    _, run = await _dispatch(stack)
    with pytest.raises(NotYourRun):
        await stack.service.finish_run(run.id, "ali-ceo", RunOutcome.DONE)
    with pytest.raises(NotYourRun):
        await stack.service.report_usage(
            run.id, "mat-cto", turns=1, input_tokens=1, output_tokens=1, cost=0
        )
    with pytest.raises(RunNotFound):
        await stack.service.finish_run("no-such-run", "ali-cto", RunOutcome.DONE)
    with pytest.raises(RunNotFound):
        await stack.service.runs.get("no-such-run")
    assert (await stack.service.runs.get(run.id)).status is RunStatus.RUNNING


async def test_usage_is_cumulative_and_marks_progress(stack: Stack) -> None:
    _, run = await _dispatch(stack)
    stack.clock.advance(30)
    r = await stack.service.report_usage(
        run.id, "ali-cto", turns=3, input_tokens=300, output_tokens=40, cost=0.03, model="m2"
    )
    assert (r.turns, r.input_tokens, r.output_tokens, r.cost, r.model) == (3, 300, 40, 0.03, "m2")
    assert r.last_progress_at == stack.clock.now()
    # A delayed, older report never winds the totals back.
    r = await stack.service.report_usage(
        run.id, "ali-cto", turns=2, input_tokens=200, output_tokens=10, cost=0.01
    )
    assert (r.turns, r.input_tokens, r.output_tokens, r.cost, r.model) == (3, 300, 40, 0.03, "m2")
    assert (await stack.service.agent("ali-cto")).last_seen_at == stack.clock.now()


async def test_claim_rules(stack: Stack) -> None:
    first, run = await _dispatch(stack)
    # Filed while ali-cto is busy: it waits in todo, and the live run may take it on.
    extra = await stack.service.file_issue(title="extra", assignee="ali-cto", actor="o")
    await stack.scheduler.drain()
    claimed = await stack.service.runs.claim(extra.id, run.id, "ali-cto")
    assert (claimed.status, claimed.lease_run_id, claimed.lease_until) == (
        IssueStatus.IN_PROGRESS,
        run.id,
        run.deadline,
    )
    assert await stack.service.runs.claim(first, run.id, "ali-cto"), "re-claiming is harmless"

    other_issue, other_run = await _dispatch(stack, agent="ali-ceo")
    with pytest.raises(LeaseConflict, match="held by run"):
        await stack.service.runs.claim(other_issue, run.id, "ali-cto")
    unheld = await stack.service.file_issue(title="theirs", assignee="ali-qa-1", actor="o")
    await stack.service.pause("ali-qa-1", actor="o")
    await stack.scheduler.drain()
    with pytest.raises(LeaseConflict, match="assigned to ali-qa-1"):
        await stack.service.runs.claim(unheld.id, run.id, "ali-cto")
    with pytest.raises(NotYourRun):
        await stack.service.runs.claim(unheld.id, other_run.id, "ali-cto")
    with pytest.raises(IssueNotFound):
        await stack.service.runs.claim("ALI-99", run.id, "ali-cto")
    await stack.service.move(unheld.id, IssueStatus.CANCELLED, actor="o")
    with pytest.raises(Conflict, match="cancelled"):
        await stack.service.runs.claim(unheld.id, other_run.id, "ali-ceo")

    await stack.service.finish_run(run.id, "ali-cto", RunOutcome.DONE)
    with pytest.raises(RunNotActive):
        await stack.service.runs.claim(first, run.id, "ali-cto")


async def test_open_is_compare_and_set(stack: Stack) -> None:
    issue_id, run = await _dispatch(stack)
    agent = await stack.service.agent("ali-cto")
    issue = await stack.service.issue(issue_id)
    async with stack.db.write() as conn:
        assert await stack.service.runs.open(conn, agent, issue, stack.clock.now()) is None
    await stack.service.finish_run(run.id, "ali-cto", RunOutcome.FAILED, "flaky")
    issue = await stack.service.issue(issue_id)
    assert issue.not_before == stack.clock.now() + 60
    async with stack.db.write() as conn:
        assert await stack.service.runs.open(conn, agent, issue, stack.clock.now() + 59) is None
        reopened = await stack.service.runs.open(conn, agent, issue, stack.clock.now() + 60)
    assert reopened is not None and reopened.id != run.id
    assert (await stack.service.issue(issue_id)).attempts == 2


async def test_finish_after_timeout_is_refused_and_changes_nothing(stack: Stack) -> None:
    issue_id, run = await _dispatch(stack)
    stack.clock.advance(31 * 60)
    assert await stack.service.runs.time_out() == [run.id]
    with pytest.raises(RunNotActive, match="timed_out"):
        await stack.service.finish_run(run.id, "ali-cto", RunOutcome.DONE, "late")
    after = await stack.service.issue(issue_id)
    assert after.status is IssueStatus.IN_PROGRESS and after.lease_run_id is None
    agent = await stack.service.agent("ali-cto")
    assert (agent.status, agent.reason_code) == (AgentStatus.ERROR, "run_timed_out")
    # A runtime returning afterwards is a no-op too.
    await stack.service.runs.complete(run.id, DispatchResult(finished=True))
    assert (await stack.service.runs.get(run.id)).status is RunStatus.TIMED_OUT


async def test_finish_respects_an_owner_move(stack: Stack) -> None:
    issue_id, run = await _dispatch(stack)
    await stack.service.move(issue_id, IssueStatus.BLOCKED, actor="owner", reason="wait for legal")
    await stack.service.finish_run(run.id, "ali-cto", RunOutcome.DONE, "did it anyway")
    after = await stack.service.issue(issue_id)
    assert (after.status, after.reason, after.lease_run_id) == (
        IssueStatus.BLOCKED,
        "wait for legal",
        None,
    )


async def test_paused_agent_stays_paused_when_its_run_ends(stack: Stack) -> None:
    _, run = await _dispatch(stack)
    await stack.service.pause("ali-cto", actor="o")
    await stack.service.finish_run(run.id, "ali-cto", RunOutcome.DONE)
    assert (await stack.service.agent("ali-cto")).status is AgentStatus.PAUSED


async def test_with_no_replica_alive_every_live_run_is_interrupted(stack: Stack) -> None:
    _, done_run = await _dispatch(stack, agent="ali-cto")
    await stack.service.finish_run(done_run.id, "ali-cto", RunOutcome.DONE)
    _, live_a = await _dispatch(stack, agent="ali-ceo")
    _, live_b = await _dispatch(stack, agent="mat-ceo")
    assert await stack.service.runs.interrupt_orphans(()) == 2
    assert await stack.service.runs.interrupt_orphans(()) == 0
    for run_id in (live_a.id, live_b.id):
        run = await stack.service.runs.get(run_id)
        assert (run.status, run.reason_code) == (RunStatus.INTERRUPTED, "interrupted")
    assert (await stack.service.runs.get(done_run.id)).status is RunStatus.SUCCEEDED


async def test_orphans_are_the_live_runs_of_replicas_no_longer_alive(stack: Stack) -> None:
    stack.service.runs.replica = "a"
    _, of_a = await _dispatch(stack, agent="ali-ceo")
    stack.service.runs.replica = "b"
    _, of_b = await _dispatch(stack, agent="mat-ceo")
    assert await stack.service.runs.interrupt_orphans(["a", "b"]) == 0
    assert await stack.service.runs.interrupt_orphans(["a"]) == 1  # b stopped
    assert (await stack.service.runs.get(of_b.id)).status is RunStatus.INTERRUPTED
    assert (await stack.service.runs.get(of_a.id)).status is RunStatus.RUNNING
    assert (await stack.service.agent("mat-ceo")).status is AgentStatus.IDLE
