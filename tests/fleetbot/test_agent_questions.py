"""`fleetbot agent ask` and `wait-answer` against the real questions routes: an agent asks, the
owner answers (through the service, as the bot does), and the agent reads the answer; a run
that asked ends `waiting` and the issue keeps its status."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from agent_cli_fleet import agent, file_issue, live_fleet, open_run, run_env

from core.models import IssueStatus, QuestionStatus, RunStatus

pytestmark = pytest.mark.timeout(60)


async def test_ask_then_wait_for_the_owners_choice(tmp_path: Path) -> None:
    async with live_fleet(tmp_path) as fleet:
        issue_id = await file_issue(fleet, "bishop", "Ship the release")
        run, token = await open_run(fleet, "bishop")
        env = run_env(fleet, run, token)

        asked = await agent(
            "ask", "Which", "day?", "--choice", "Monday", "--choice", "Friday", env=env
        )
        assert asked.code == 0, asked.err
        assert asked.out.strip() == (
            f"Asked Q1 on {issue_id}. Now either end this run and get woken with the answer: "
            '`fleetbot agent finish --outcome waiting --summary "waiting on Q1"`, or wait here: '
            "`fleetbot agent wait-answer Q1`."
        )
        [question] = await fleet.service.questions(issue_id)
        assert (question.text, question.choices, question.run_id) == (
            "Which day?",
            ("Monday", "Friday"),
            run.id,
        )

        # Nobody answers: exit 7 and what to do instead.
        timed_out = await agent("wait-answer", "Q1", "--timeout", "1", env=env)
        assert timed_out.code == 7
        assert "No answer to Q1 after 1 s" in timed_out.out
        assert 'finish --outcome waiting --summary "waiting on Q1"' in timed_out.out

        waiting = asyncio.create_task(agent("wait-answer", "q1", "--timeout", "30", env=env))
        await asyncio.sleep(1.0)  # the command is in its long poll by now
        await fleet.service.answer(question.id, "tg:123", choice=1)
        got = await asyncio.wait_for(waiting, 20)
        assert got.code == 0, got.err
        assert got.out.strip() == 'Q1 "Which day?" answered by tg:123: Friday'

        shown = await agent("show", env=env)
        assert 'Q1 "Which day?" answered by tg:123: Friday' in shown.out


async def test_an_approval_asked_with_wait_gets_its_answer_in_one_command(
    tmp_path: Path,
) -> None:
    async with live_fleet(tmp_path) as fleet:
        await file_issue(fleet, "bishop", "Deploy")
        run, token = await open_run(fleet, "bishop")
        env = run_env(fleet, run, token)
        both = await agent("ask", "Deploy?", "--approval", "--choice", "Yes", env=env)
        assert both.code == 2 and "drop --choice" in both.err

        asking = asyncio.create_task(
            agent("--json", "ask", "Deploy to prod?", "--approval", "--wait", "30", env=env)
        )
        question = None
        while question is None:
            await asyncio.sleep(0.1)
            found = await fleet.service.questions(run.issue_id or "")
            question = found[0] if found else None
        assert (question.kind.value, question.choices) == ("approval", ("Approve", "Reject"))
        await asyncio.sleep(0.5)
        await fleet.service.answer(question.id, "tg:123", choice=1)
        got = await asyncio.wait_for(asking, 20)
        assert got.code == 0, got.err
        answer = got.json()
        assert (answer["status"], answer["answer"], answer["answered_by"]) == (
            "answered",
            "Reject",
            "tg:123",
        )


async def test_a_run_that_asked_ends_waiting_and_the_issue_keeps_its_status(
    tmp_path: Path,
) -> None:
    async with live_fleet(tmp_path) as fleet:
        issue_id = await file_issue(fleet, "bishop", "Pick a name")
        run, token = await open_run(fleet, "bishop")
        env = run_env(fleet, run, token)
        assert (await agent("ask", "Name?", env=env)).code == 0
        waited = await agent(
            "finish", "--outcome", "waiting", "--summary", "waiting on Q1", env=env
        )
        assert waited.code == 0, waited.err
        assert waited.out.strip() == (
            f"Run {run.id} ended; fleetbot wakes you with the answer. End your turn now."
        )
        ended = await fleet.service.run(run.id)
        issue = await fleet.service.issue(issue_id)
        assert ended.status is RunStatus.SUCCEEDED
        # No attempt is spent on a run that waits for an answer.
        assert issue.status is IssueStatus.IN_PROGRESS and issue.attempts == 0


async def test_a_question_cancelled_by_the_finish_stops_the_wait(tmp_path: Path) -> None:
    async with live_fleet(tmp_path) as fleet:
        issue_id = await file_issue(fleet, "bishop", "Do it anyway")
        run, token = await open_run(fleet, "bishop")
        env = run_env(fleet, run, token)
        assert (await agent("ask", "Sure?", env=env)).code == 0
        done = await agent("finish", "--outcome", "done", "--summary", "did it", env=env)
        assert done.code == 0, done.err
        [question] = await fleet.service.questions(issue_id)
        assert question.status is QuestionStatus.CANCELLED
        # A long-lived token (the run's died with it) still reads the question.
        long_env = {**env, "FLEETBOT_TOKEN": fleet.auth.token_file(run.agent_id).read_text()}
        got = await agent("wait-answer", "Q1", "--timeout", "5", env=long_env)
        assert got.code == 5
        assert (
            got.out.strip() == 'Q1 "Sure?" was cancelled (the issue moved on); stop waiting for it'
        )
        unknown = await agent("wait-answer", "Q99", env=long_env)
        assert unknown.code == 4 and "check the question id" in unknown.err
        bad = await agent("wait-answer", "seven", env=long_env)
        assert bad.code == 2 and "write Q7 or 7" in bad.err
