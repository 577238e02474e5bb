"""Questions and approvals in the core: the workable rule, `waiting`, answers that wake the
agent on their issue with a note, replies that talk to it, and what cancels a question."""

from __future__ import annotations

from pathlib import Path

import pytest
from stack_helpers import Stack, open_stack

from core.clock import ManualClock
from core.errors import Conflict, InvalidInput, NotFound
from core.events import QuestionAnswered, QuestionAsked, QuestionCancelled, WakeRequested
from core.models import (
    HeartbeatOutcome,
    IssueStatus,
    QuestionKind,
    QuestionStatus,
    Run,
    RunOutcome,
    RunStatus,
)
from core.runtimes.base import DispatchResult
from core.store import issues as issue_store


async def _running(s: Stack, agent: str = "ali-cto", title: str = "t") -> tuple[str, Run]:
    """File an issue; its agent is woken at once and holds a live run on it."""
    issue = await s.service.file_issue(title=title, assignee=agent, actor="o")
    await s.scheduler.drain()
    (run,) = [r for r in await s.service.recent_runs(agent) if r.issue_id == issue.id]
    assert run.status is RunStatus.RUNNING
    return issue.id, run


async def _ask_and_wait(s: Stack, agent: str = "ali-cto", **kw: object) -> tuple[str, int]:
    """The agent asks about its issue in its run and ends the run `waiting`."""
    issue_id, run = await _running(s, agent)
    me = await s.service.agent(agent)
    q = await s.service.ask(me, issue_id, "Deploy to prod?", run_id=run.id, **kw)  # type: ignore[arg-type]
    await s.service.finish_run(run.id, agent, RunOutcome.WAITING, "asked the owner")
    await s.scheduler.drain()
    return issue_id, q.id


async def test_an_open_question_makes_the_issue_unworkable_until_answered(stack: Stack) -> None:
    s = stack
    issue_id, qid = await _ask_and_wait(s, choices=["Yes", "Not yet"])
    issue = await s.service.issue(issue_id)
    assert issue.status is IssueStatus.IN_PROGRESS and issue.lease_run_id is None
    assert issue.attempts == 0, "waiting spends no attempt"
    (run,) = await s.service.recent_runs("ali-cto")
    assert (run.status, run.reason_code) == (RunStatus.SUCCEEDED, "waiting")
    # The same rule everywhere: no pick, no "has work", no lease; the inbox still shows it.
    now = s.clock.now()
    assert await issue_store.next_workable(s.db.reader, "ali-cto", now) is None
    assert not await issue_store.has_workable(s.db.reader, "ali-cto", now)
    assert [i.id for i in await s.service.inbox("ali-cto")] == [issue_id]
    # Heartbeats, forced or due, find no work: no runtime call.
    calls = len(s.runtimes.calls)
    beat = await s.scheduler.heartbeat.beat("ali-cto", forced=True)
    assert beat is not None and beat.outcome is HeartbeatOutcome.NO_WORK
    s.clock.advance(5 * 3600)
    report = await s.scheduler.tick()
    await s.scheduler.drain()
    assert report.beats.get(HeartbeatOutcome.DISPATCHED, 0) == 0
    assert len(s.runtimes.calls) == calls

    answered = await s.service.answer(qid, "tg:1001", choice=1, name="Olga")
    await s.scheduler.drain()
    assert (answered.status, answered.answer, answered.answered_by) == (
        QuestionStatus.ANSWERED,
        "Not yet",
        "tg:1001",
    )
    job = s.runtimes.calls[-1]
    assert (job.agent_id, job.issue_id, job.wake_reason) == ("ali-cto", issue_id, "answer")
    assert job.wake_note == f'Q{qid} "Deploy to prod?" answered by Olga (tg:1001): Not yet'
    comments = await s.service.comments(issue_id)
    assert [(c.author, c.body) for c in comments] == [
        ("tg:1001", f'Answer to Q{qid} ("Deploy to prod?"): Not yet')
    ]
    rows = await s.service.audit_log()
    assert any(r["action"] == "question.answer" and r["target"] == f"Q{qid}" for r in rows)
    assert [type(e) for e in s.events if isinstance(e, QuestionAsked | QuestionAnswered)] == [
        QuestionAsked,
        QuestionAnswered,
    ]


async def test_an_approval_wakes_with_reason_approval(stack: Stack) -> None:
    issue_id, qid = await _ask_and_wait(stack, approval=True)
    q = await stack.service.question(f"Q{qid}")
    assert (q.kind, q.choices) == (QuestionKind.APPROVAL, ("Approve", "Reject"))
    with pytest.raises(InvalidInput, match="tap Approve or Reject"):
        await stack.service.answer(qid, "tg:1", text="maybe later")
    await stack.service.answer(qid, "tg:1", text="reject: not before Friday")
    await stack.scheduler.drain()
    job = stack.runtimes.calls[-1]
    assert (job.issue_id, job.wake_reason) == (issue_id, "approval")
    assert job.wake_note.endswith("answered by tg:1: Reject: not before Friday")


async def test_a_stale_or_made_up_answer_changes_nothing(stack: Stack) -> None:
    issue_id, qid = await _ask_and_wait(stack, choices=["A", "B"])
    with pytest.raises(InvalidInput, match="no choice 3"):
        await stack.service.answer(qid, "tg:1", choice=2)
    with pytest.raises(NotFound):
        await stack.service.answer(qid + 99, "tg:1", choice=0)
    with pytest.raises(NotFound):
        await stack.service.answer("Q-1", "tg:1", choice=0)
    await stack.service.answer(qid, "tg:1", choice=0, name="Olga")
    await stack.scheduler.drain()
    calls = len(stack.runtimes.calls)
    with pytest.raises(Conflict, match=rf"Q{qid} was already answered by Olga \(tg:1\): A") as exc:
        await stack.service.answer(qid, "tg:2", choice=1, name="Omar")
    assert exc.value.code == "question_closed"
    assert len(await stack.service.comments(issue_id)) == 1
    assert len(stack.runtimes.calls) == calls, "a stale answer wakes nobody"


async def test_waiting_needs_an_open_question(stack: Stack) -> None:
    issue_id, run = await _running(stack)
    with pytest.raises(Conflict, match="no open question") as exc:
        await stack.service.finish_run(run.id, "ali-cto", RunOutcome.WAITING)
    assert exc.value.code == "no_open_question"
    assert (await stack.service.run(run.id)).status is RunStatus.RUNNING
    agent = await stack.service.agent("ali-cto")
    q = await stack.service.ask(agent, issue_id, "Which region?")
    await stack.service.answer(q.id, "tg:1", text="eu-north")
    with pytest.raises(Conflict, match=f"Q{q.id} was answered meanwhile .'eu-north'."):
        await stack.service.finish_run(run.id, "ali-cto", RunOutcome.WAITING)
    # A finished issue takes no questions.
    await stack.service.finish_run(run.id, "ali-cto", RunOutcome.DONE)
    with pytest.raises(Conflict, match="done") as closed:
        await stack.service.ask(agent, issue_id, "one more thing?")
    assert closed.value.code == "issue_closed"


async def test_a_turn_that_ends_well_with_its_question_open_is_waiting(stack: Stack) -> None:
    issue_id, run = await _running(stack)
    agent = await stack.service.agent("ali-cto")
    await stack.service.ask(agent, issue_id, "OK to email customers?", run_id=run.id)
    await stack.service.runs.complete(run.id, DispatchResult(finished=True, summary="asked"))
    ended = await stack.service.run(run.id)
    assert (ended.status, ended.reason_code) == (RunStatus.SUCCEEDED, "waiting")
    issue = await stack.service.issue(issue_id)
    assert (issue.status, issue.attempts) == (IssueStatus.IN_PROGRESS, 0), "not in_review"
    # Without an open question the same ending goes to review, as before.
    other_id, other = await _running(stack, "ali-ceo")
    await stack.service.runs.complete(other.id, DispatchResult(finished=True))
    assert (await stack.service.issue(other_id)).status is IssueStatus.IN_REVIEW


async def test_a_verdict_or_a_closed_issue_cancels_open_questions(stack: Stack) -> None:
    issue_id, run = await _running(stack)
    agent = await stack.service.agent("ali-cto")
    q = await stack.service.ask(agent, issue_id, "Which font?", choices=["Serif", "Sans"])
    await stack.service.finish_run(run.id, "ali-cto", RunOutcome.DONE, "picked one myself")
    gone = await stack.service.question(q.id)
    assert gone.status is QuestionStatus.CANCELLED
    with pytest.raises(Conflict, match="cancelled"):
        await stack.service.answer(q.id, "tg:1", choice=0)
    assert QuestionCancelled(q.id, issue_id) in stack.events

    other = await stack.service.file_issue(title="later", assignee="ali-ceo", actor="o")
    await stack.scheduler.drain()
    ceo = await stack.service.agent("ali-ceo")
    q2 = await stack.service.ask(ceo, other.id, "Now?")
    await stack.service.move(other.id, IssueStatus.CANCELLED, "tg:1001")
    assert (await stack.service.question(q2.id)).status is QuestionStatus.CANCELLED
    assert await stack.service.open_questions() == []


async def test_the_answered_issue_goes_first_and_waits_out_a_busy_agent(stack: Stack) -> None:
    s = stack
    issue_id, qid = await _ask_and_wait(s)
    # Meanwhile the agent has other work, older or newer, and is busy with it.
    busy = await s.service.file_issue(title="other work", assignee="ali-cto", actor="o")
    await s.scheduler.drain()
    assert s.runtimes.calls[-1].issue_id == busy.id
    (live,) = [r for r in await s.service.recent_runs("ali-cto") if r.issue_id == busy.id]
    await s.service.answer(qid, "tg:1", text="yes, go")
    await s.scheduler.drain()
    assert s.runtimes.calls[-1].issue_id == busy.id, "busy: the answer waits for the run"
    await s.service.finish_run(live.id, "ali-cto", RunOutcome.DONE)
    await s.scheduler.drain()
    job = s.runtimes.calls[-1]
    assert (job.issue_id, job.wake_reason) == (issue_id, "answer")
    assert "yes, go" in job.wake_note


async def test_a_heartbeat_prefers_the_issue_it_was_woken_for(
    tmp_path: Path, clock: ManualClock
) -> None:
    # Not started: no event wakes anybody behind the test's back.
    async with open_stack(tmp_path, clock, start=False) as s:
        older = await s.service.file_issue(title="older", assignee="ali-qa-1", actor="o")
        newer = await s.service.file_issue(title="newer", assignee="ali-qa-1", actor="o")
        beat = await s.scheduler.heartbeat.beat("ali-qa-1", forced=True, prefer=newer.id)
        assert beat is not None and beat.run is not None and beat.issue is not None
        assert beat.issue.id == newer.id
        await s.service.finish_run(beat.run.id, "ali-qa-1", RunOutcome.DONE)
        # A preferred issue that cannot be worked (done now) is passed over for the oldest.
        beat = await s.scheduler.heartbeat.beat("ali-qa-1", forced=True, prefer=newer.id)
        assert beat is not None and beat.issue is not None and beat.issue.id == older.id


async def test_a_reply_is_a_comment_that_wakes_the_assignee(stack: Stack) -> None:
    s = stack
    issue_id, run = await _running(s)
    await s.service.runs.complete(run.id, DispatchResult(finished=True))  # → in_review
    assert (await s.service.issue(issue_id)).status is IssueStatus.IN_REVIEW
    talk = await s.service.talk(issue_id, "please also update the docs", "tg:1002", name="Omar")
    assert talk.woke == "ali-cto" and talk.issue.status is IssueStatus.IN_PROGRESS
    assert talk.comment.author == "tg:1002"
    await s.scheduler.drain()
    job = s.runtimes.calls[-1]
    assert (job.issue_id, job.wake_reason) == (issue_id, "comment")
    assert job.wake_note == "Comment from Omar (tg:1002): please also update the docs"
    assert WakeRequested("ali-cto", "comment", issue_id, job.wake_note) in s.events
    # A finished issue keeps the comment and wakes nobody.
    (live,) = [r for r in await s.service.recent_runs("ali-cto") if r.status is RunStatus.RUNNING]
    await s.service.finish_run(live.id, "ali-cto", RunOutcome.DONE)
    await s.scheduler.drain()
    calls = len(s.runtimes.calls)
    late = await s.service.talk(issue_id, "thanks!", "tg:1001")
    await s.scheduler.drain()
    assert late.woke is None and "done" in late.why and "nobody woken" in late.why
    assert len(s.runtimes.calls) == calls
    assert [c.body for c in await s.service.comments(issue_id)][-1] == "thanks!"


async def test_a_reply_to_an_issue_waiting_on_a_question_wakes_nobody(stack: Stack) -> None:
    issue_id, qid = await _ask_and_wait(stack)
    calls = len(stack.runtimes.calls)
    talk = await stack.service.talk(issue_id, "context for you", "tg:1001")
    await stack.scheduler.drain()
    assert talk.woke is None and f"waits on Q{qid}" in talk.why
    assert len(stack.runtimes.calls) == calls


async def test_a_question_is_checked_like_any_input(stack: Stack) -> None:
    issue_id, _ = await _running(stack)
    agent = await stack.service.agent("ali-cto")
    bad = [
        ({"text": "  "}, "needs some text"),
        ({"text": "x" * 2001}, "under 2000"),
        ({"text": "q", "choices": list("abcdefg")}, "at most 6"),
        ({"text": "q", "choices": ["x" * 41]}, "1 to 40"),
        ({"text": "q", "choices": ["a"], "approval": True}, "give no choices"),
    ]
    for kw, why in bad:
        with pytest.raises(InvalidInput, match=why):
            await stack.service.ask(agent, issue_id, **kw)  # type: ignore[arg-type]
    assert await stack.service.questions(issue_id) == []
