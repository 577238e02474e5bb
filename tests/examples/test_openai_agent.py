"""examples/openai_agent.py, run by the real `process` runtime against a fake OpenAI-compatible
endpoint: issues go from filed to done (or review, or failed) with the usage, cost and model
the endpoint's answers imply recorded on the run."""

from __future__ import annotations

from pathlib import Path

import pytest
from example_fleet import CHEAP, KEY, PRICE, STRONG, ended_run, example_fleet, file_issue

from core.models import IssueStatus, RunStatus
from tests.examples.fake_chat_model import Call, FakeChatModel, Refuse, Say, ToolCall, Tools

pytestmark = pytest.mark.timeout(90)


def comment_then_finish(call: Call) -> Say | Tools:
    if call.turn == 0:
        return Tools(ToolCall("comment", {"text": "-looking at it (a text starting with a dash)"}))
    if call.turn == 1:
        return Tools(ToolCall("finish", {"outcome": "done", "summary": "fixed the login page"}))
    return Say("nothing more")


def cost_of(model: FakeChatModel) -> float:
    prompt, completion = model.totals()
    return (prompt * PRICE[0] + completion * PRICE[1]) / 1e6


async def test_an_issue_goes_from_filed_to_done_with_usage_and_cost_on_the_run(
    tmp_path: Path,
) -> None:
    with FakeChatModel(comment_then_finish) as model:
        async with example_fleet(tmp_path, model.base_url) as fleet:
            issue_id = await file_issue(fleet, "worker-0", "Fix the login page", "It sticks.")
            run = await ended_run(fleet, "worker-0", issue_id)
            issue = await fleet.service.issue(issue_id)
            comments = await fleet.service.comments(issue_id)
    assert (run.status, issue.status) == (RunStatus.SUCCEEDED, IssueStatus.DONE), run.reason
    assert run.summary == "fixed the login page"
    prompt, completion = model.totals()
    assert len(model.calls) == 2 and prompt > 0 and completion > 0
    assert (run.turns, run.input_tokens, run.output_tokens) == (2, prompt, completion)
    assert run.cost == pytest.approx(cost_of(model), abs=1e-6) and run.cost > 0
    assert run.model == CHEAP
    assert [c.body for c in comments] == ["-looking at it (a text starting with a dash)"]
    first = model.calls[0]
    # What the endpoint saw: the key (from fleetbot's env, through secret_env), the issue, the
    # four tools.
    assert first.headers["authorization"] == "Bearer sk-fake-key"
    assert first.body["model"] == CHEAP and "Fix the login page" in first.prompt
    assert "It sticks." in first.prompt
    names = {t["function"]["name"] for t in first.body["tools"]}
    assert names == {"finish", "comment", "ask", "file_issue"}
    # The tool result the model read back is the CLI's own text.
    assert model.calls[1].tool_results() == [f"Commented on {issue_id} (comment 1)."]


@pytest.mark.parametrize(
    ("body", "model_field"), [("Please.\nmodel: strong\n", None), ("Please.", "strong")]
)
async def test_the_issue_asks_for_the_strong_model(
    tmp_path: Path, body: str, model_field: str | None
) -> None:
    with FakeChatModel() as model:
        async with example_fleet(tmp_path, model.base_url, key_in_file=True) as fleet:
            issue_id = await file_issue(fleet, "worker-0", "Hard one", body, model=model_field)
            run = await ended_run(fleet, "worker-0", issue_id)
    assert run.status is RunStatus.SUCCEEDED, run.reason
    assert [c.body["model"] for c in model.calls] == [STRONG]
    assert run.model == STRONG
    assert model.calls[0].headers["authorization"] == f"Bearer {KEY}"  # OPENAI_API_KEY_FILE


async def test_a_plain_reply_goes_to_review_as_the_summary(tmp_path: Path) -> None:
    with FakeChatModel(lambda call: Say("I looked: the page loads fine for me.")) as model:
        async with example_fleet(tmp_path, model.base_url) as fleet:
            issue_id = await file_issue(fleet, "worker-0", "Check the page")
            run = await ended_run(fleet, "worker-0", issue_id)
            issue = await fleet.service.issue(issue_id)
    assert (run.status, issue.status) == (RunStatus.SUCCEEDED, IssueStatus.IN_REVIEW)
    assert run.summary == "I looked: the page loads fine for me."
    assert run.turns == 1 and run.input_tokens == model.totals()[0]


async def test_a_failing_endpoint_fails_the_run_saying_so(tmp_path: Path) -> None:
    with FakeChatModel(lambda call: Refuse(500, "overloaded")) as model:
        async with example_fleet(tmp_path, model.base_url, max_attempts=1) as fleet:
            issue_id = await file_issue(fleet, "worker-0", "Anything")
            run = await ended_run(fleet, "worker-0", issue_id)
    assert run.status is RunStatus.FAILED
    assert "the model endpoint answered 500" in run.reason and "overloaded" in run.reason


async def test_the_model_can_file_work_for_another_agent(tmp_path: Path) -> None:
    def delegate(call: Call) -> Say | Tools:
        if "Fix the flaky test" in call.prompt:
            return Tools(ToolCall("finish", {"outcome": "done", "summary": "flake fixed"}))
        if call.turn == 0:
            args = {"assignee": "role-1", "title": "Fix the flaky test", "body": "see CI"}
            return Tools(ToolCall("file_issue", args))
        return Tools(ToolCall("finish", {"outcome": "done", "summary": "handed it to role-1"}))

    with FakeChatModel(delegate) as model:
        async with example_fleet(tmp_path, model.base_url, agents=2) as fleet:
            issue_id = await file_issue(fleet, "worker-0", "Triage CI")
            run = await ended_run(fleet, "worker-0", issue_id)
            # Filing it woke its assignee, whose example agent finished it.
            child_run = await ended_run(fleet, "worker-1", "LAB-2")
            child = await fleet.service.issue("LAB-2")
    assert run.status is RunStatus.SUCCEEDED and run.summary == "handed it to role-1"
    assert (child.title, child.assignee_id, child.created_by) == (
        "Fix the flaky test",
        "worker-1",
        "agent:worker-0",
    )
    assert child_run.status is RunStatus.SUCCEEDED and child.status is IssueStatus.DONE
    assert model.calls[1].tool_results() == ["Filed LAB-2 [todo] @worker-1 Fix the flaky test."]


async def test_it_asks_for_an_approval_waits_and_goes_on_when_woken_with_it(
    tmp_path: Path,
) -> None:
    def careful(call: Call) -> Tools:
        if "answered Approve" in call.prompt:  # the second run: the answer is in the issue
            return Tools(ToolCall("finish", {"outcome": "done", "summary": "deployed"}))
        if call.turn == 0:
            return Tools(ToolCall("ask", {"question": "Deploy to prod?", "approval": True}))
        return Tools(ToolCall("finish", {"outcome": "waiting", "summary": "waiting on Q1"}))

    with FakeChatModel(careful) as model:
        async with example_fleet(tmp_path, model.base_url) as fleet:
            issue_id = await file_issue(fleet, "worker-0", "Deploy the release")
            first = await ended_run(fleet, "worker-0", issue_id)
            waiting = await fleet.service.issue(issue_id)
            [question] = await fleet.service.questions(issue_id)
            await fleet.service.answer(question.id, "tg:123", choice=0, name="Ann")
            second = None
            while second is None or second.id == first.id:
                second = await ended_run(fleet, "worker-0", issue_id)
            issue = await fleet.service.issue(issue_id)
    assert first.status is RunStatus.SUCCEEDED and first.summary == "waiting on Q1"
    assert waiting.status is IssueStatus.IN_PROGRESS
    assert question.kind.value == "approval"
    assert second.status is RunStatus.SUCCEEDED and second.summary == "deployed"
    assert issue.status is IssueStatus.DONE
    woken = [c.prompt for c in model.calls if "answered Approve" in c.prompt]
    assert woken and "Woken because: approval" in woken[0]
