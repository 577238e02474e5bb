"""The questions routes of the agent API, through the real app: ask, the long poll for the
answer, IssueDetail.questions, and finish outcome `waiting`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from core.models import RunOutcome
from tests.api_helpers import ApiStack, api_stack


async def _issue_with_run(api: ApiStack, agent: str = "bishop") -> tuple[str, Any, dict[str, str]]:
    issue = await api.service.file_issue(title="Deploy", assignee=agent, actor="owner")
    run = await api.open_run(agent)
    return issue.id, run, await api.run_token_headers(agent, run)


async def test_an_agent_asks_waits_and_reads_the_answer(tmp_path: Path) -> None:
    async with api_stack(tmp_path) as api:
        issue_id, run, h = await _issue_with_run(api)
        r = await api.client.post(
            f"/api/v1/issues/{issue_id}/questions",
            headers=h,
            json={"text": "Which region?", "choices": ["eu-north", "us-east"]},
        )
        assert r.status_code == 201, r.text
        q = r.json()
        assert {k: q[k] for k in ("issue_id", "agent_id", "run_id", "kind", "status")} == {
            "issue_id": issue_id,
            "agent_id": "bishop",
            "run_id": run.id,  # from the run token: no need to send it
            "kind": "question",
            "status": "open",
        }
        assert q["choices"] == ["eu-north", "us-east"] and q["answer"] is None
        url = f"/api/v1/questions/{q['id']}"
        assert (await api.client.get(url, headers=h)).json()["status"] == "open"
        assert (await api.client.get(f"/api/v1/questions/Q{q['id']}", headers=h)).status_code == 200

        # The long poll answers as soon as someone answers, well before its wait is up.
        async def answer_soon() -> None:
            await asyncio.sleep(0.2)
            await api.service.answer(q["id"], "tg:1001", choice=0, name="Olga")

        started = asyncio.get_running_loop().time()
        polled, _ = await asyncio.gather(
            api.client.get(url, headers=h, params={"wait": 30}), answer_soon()
        )
        assert asyncio.get_running_loop().time() - started < 5
        got = polled.json()
        assert (got["status"], got["answer"], got["answered_by"]) == (
            "answered",
            "eu-north",
            "tg:1001",
        )
        detail = (await api.client.get(f"/api/v1/issues/{issue_id}", headers=h)).json()
        assert [x["id"] for x in detail["questions"]] == [q["id"]]
        assert detail["comments"][0]["author"] == "tg:1001"


async def test_a_long_poll_ends_with_the_question_still_open(tmp_path: Path) -> None:
    async with api_stack(tmp_path) as api:
        issue_id, _, h = await _issue_with_run(api)
        r = await api.client.post(
            f"/api/v1/issues/{issue_id}/questions", headers=h, json={"text": "OK?"}
        )
        started = asyncio.get_running_loop().time()
        polled = await api.client.get(
            f"/api/v1/questions/{r.json()['id']}", headers=h, params={"wait": 0.3}
        )
        assert 0.25 < asyncio.get_running_loop().time() - started < 5
        assert polled.status_code == 200 and polled.json()["status"] == "open"
        for wait in (-1, 61, "soon"):
            bad = await api.client.get(
                f"/api/v1/questions/{r.json()['id']}", headers=h, params={"wait": wait}
            )
            assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.wait"


async def test_bad_questions_are_422_naming_the_field(tmp_path: Path) -> None:
    async with api_stack(tmp_path) as api:
        issue_id, _, h = await _issue_with_run(api)
        url = f"/api/v1/issues/{issue_id}/questions"
        cases: list[tuple[dict[str, Any], str]] = [
            ({"text": ""}, "text"),
            ({"text": " \t"}, "text"),
            ({"text": "x" * 2001}, "text"),
            ({"text": "q", "choices": ["a"] * 7}, "choices"),
            ({"text": "q", "choices": ["x" * 41]}, "choices.0"),
            ({"text": "q", "choices": [" "]}, "choices.0"),
            ({"text": "q", "approval": True, "choices": ["Yes"]}, "choices"),
            ({"text": "q", "colour": "red"}, "colour"),
        ]
        for body, field in cases:
            r = await api.client.post(url, headers=h, json=body)
            assert r.status_code == 422, (body, r.text)
            assert [e["field"] for e in r.json()["errors"]] == [field], (body, r.text)
        approval = await api.client.post(url, headers=h, json={"text": "Ship?", "approval": True})
        assert approval.status_code == 201 and approval.json()["choices"] == ["Approve", "Reject"]


async def test_other_companies_and_closed_issues(tmp_path: Path) -> None:
    async with api_stack(tmp_path) as api:
        issue_id, run, h = await _issue_with_run(api)
        mine = await api.client.post(
            f"/api/v1/issues/{issue_id}/questions", headers=h, json={"text": "OK?"}
        )
        qid = mine.json()["id"]
        theirs = api.headers("morpheus")  # another company's agent
        r = await api.client.post(
            f"/api/v1/issues/{issue_id}/questions", headers=theirs, json={"text": "mine?"}
        )
        assert r.status_code == 404
        r = await api.client.get(f"/api/v1/questions/{qid}", headers=theirs)
        assert (r.status_code, r.json()["error"]) == (404, "question_not_found")
        r = await api.client.get("/api/v1/questions/banana", headers=h)
        assert r.status_code == 404
        # Another run's id in the body: refused.
        r = await api.client.post(
            f"/api/v1/issues/{issue_id}/questions",
            headers=h,
            json={"text": "OK?", "run_id": "0" * 32},
        )
        assert r.status_code == 403
        await api.service.finish_run(run.id, "bishop", RunOutcome.DONE)
        r = await api.client.post(
            f"/api/v1/issues/{issue_id}/questions",
            headers=api.headers("bishop"),
            json={"text": "again?"},
        )
        assert (r.status_code, r.json()["error"]) == (409, "issue_closed")


async def test_finish_waiting_needs_an_open_question(tmp_path: Path) -> None:
    async with api_stack(tmp_path) as api:
        issue_id, run, h = await _issue_with_run(api)
        finish = f"/api/v1/runs/{run.id}/finish"
        r = await api.client.post(finish, headers=h, json={"outcome": "waiting"})
        assert (r.status_code, r.json()["error"]) == (409, "no_open_question")
        await api.client.post(
            f"/api/v1/issues/{issue_id}/questions", headers=h, json={"text": "Go?"}
        )
        r = await api.client.post(finish, headers=h, json={"outcome": "waiting", "summary": "x"})
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["reason"]) == (
            "succeeded",
            "waiting for an answer to Q1 (the agent said so)",
        )
        again = await api.client.post(finish, headers=h, json={"outcome": "waiting"})
        assert again.status_code == 200, "a repeated finish is harmless"
        issue = await api.service.issue(issue_id)
        assert (issue.status.value, issue.attempts, issue.lease_run_id) == (
            "in_progress",
            0,
            None,
        )
