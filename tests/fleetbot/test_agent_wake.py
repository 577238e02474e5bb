"""The wake message points at the agent skill, says why the agent woke, carries the run token
exactly once (or not at all for runtimes that pass it in the environment), and stays within
400 tokens whatever the issue holds."""

from __future__ import annotations

import re
from typing import Any

import pytest

from core.runtimes.base import Dispatch
from core.runtimes.wake import WHY, wake_message
from fleetbot.agent import skill

RUN = "d157e0c1345b45858ae3d08e9759ef16"
# As long as a real run token (403 characters for `bishop` in tests/fleetbot/agent_cli_fleet).
TOKEN = "eyJhbGciOiJIUzI1NiJ9." + "x" * 360 + ".sig"


def job(**kw: Any) -> Dispatch:
    issue = {"id": "ALI-7", "title": "Fix the login page", "body": "It sticks."}
    issue.update(kw.pop("issue", {}))
    fields: dict[str, Any] = {
        "run_id": RUN,
        "agent_id": "bishop",
        "agent_name": "Bishop",
        "company_id": "aliens",
        "issue": issue,
        "api_url": "http://127.0.0.1:8080/",
        "token": TOKEN,
        "token_file": None,
        "model": "glm-5.2-cloud",
        "max_turns": 50,
        "skills": (),
        "deadline": 0.0,
        "wake_reason": "assigned",
        **kw,
    }
    return Dispatch(**fields)


def test_the_token_appears_exactly_once_or_not_at_all() -> None:
    with_token = wake_message(job())
    assert with_token.count(TOKEN) == 1
    export = next(line for line in with_token.splitlines() if line.startswith("export "))
    assert export == (
        f"export FLEETBOT_API_URL=http://127.0.0.1:8080 FLEETBOT_RUN_ID={RUN} "
        f"FLEETBOT_ISSUE_ID=ALI-7 FLEETBOT_TOKEN={TOKEN}"
    )
    without = wake_message(job(), with_token=False)
    assert TOKEN not in without and "eyJ" not in without and "export " not in without
    assert "FLEETBOT_* variables are set" in without


def test_it_points_at_the_skill_and_keeps_a_curl_fallback() -> None:
    text = wake_message(job())
    assert "`fleetbot agent skill`" in text
    assert 'fleetbot agent finish --outcome done --summary "<what you did>"' in text
    curl = next(line for line in text.splitlines() if "curl " in line)
    assert f"http://127.0.0.1:8080/api/v1/runs/{RUN}/finish" in curl
    assert '"Authorization: Bearer $FLEETBOT_TOKEN"' in curl  # set by the export line
    # What the real-OpenClaw suite's fake model reads out of the prompt (tests/e2e).
    assert re.search(r"https?://[\w.:\[\]-]+/api/v1", text)
    assert re.search(r"/runs/([0-9a-f]{32})/finish", text)
    assert re.search(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+", text)


@pytest.mark.parametrize("reason", ["assigned", "heartbeat", "answer", "comment", "approval"])
def test_the_first_line_says_why_and_the_note_follows(reason: str) -> None:
    note = 'Q7 "Deploy to prod?" answered by Ann (tg:123): Approve'
    lines = wake_message(job(wake_reason=reason, wake_note=note)).splitlines()
    assert lines[0] == f"fleetbot run {RUN}: please work on issue ALI-7. {WHY[reason]}"
    assert lines[1] == note and lines[2] == ""
    assert wake_message(job(wake_reason=reason)).splitlines()[1] == ""


def test_a_note_on_several_lines_is_one_line() -> None:
    text = wake_message(job(wake_reason="comment", wake_note="Comment from Ann:\nalso\n\tthe API"))
    assert text.splitlines()[1] == "Comment from Ann: also the API"


@pytest.mark.parametrize("with_token", [True, False])
def test_it_stays_within_400_tokens_whatever_the_issue_holds(with_token: bool) -> None:
    big = job(
        wake_reason="answer",
        wake_note="n" * 500,
        issue={"title": "t " * 100, "body": "word " * 4000},
    )
    text = wake_message(big, with_token=with_token)
    assert skill.tokens(text) <= 400, skill.tokens(text)
    assert "… (the rest: `fleetbot agent show`)" in text
    small = wake_message(job(), with_token=with_token)
    assert "It sticks." in small and skill.tokens(small) <= 300
