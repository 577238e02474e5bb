"""`fleetbot agent …` as an agent's shell runs it: a real subprocess against a real API on a
loopback port, with only the FLEETBOT_* variables a runtime sets. What is checked is what the
agent reads (text, JSON, exit codes) and what fleetbot then holds (comments, usage, the run)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from agent_cli_fleet import agent, file_issue, live_fleet, open_run, run_env

from core.models import IssueStatus, Priority, RunStatus

pytestmark = pytest.mark.timeout(60)


async def test_a_whole_run_through_the_cli(tmp_path: Path) -> None:
    async with live_fleet(tmp_path) as fleet:
        issue_id = await file_issue(fleet, "bishop", "Fix the login page", "It sticks.")
        run, token = await open_run(fleet, "bishop")
        env = run_env(fleet, run, token)

        me = await agent("me", env=env)
        assert me.code == 0, me.err
        assert me.out.startswith(f"bishop (Bishop), cto at aliens; run {run.id}")

        inbox = await agent("inbox", env=env)
        assert inbox.out.strip() == f"{issue_id} [in_progress] @bishop Fix the login page"

        shown = await agent("show", env=env)
        assert shown.out.splitlines()[0] == f"{issue_id} [in_progress] @bishop Fix the login page"
        assert "It sticks." in shown.out

        claimed = await agent("claim", env=env)
        assert (claimed.code, claimed.out.strip()) == (
            0,
            f"Claimed {issue_id} for run {run.id}; it is in_progress.",
        )
        # Words without quotes are one text; `-` reads standard input.
        said = await agent("comment", "looking", "at", "it", env=env)
        assert said.out.strip() == f"Commented on {issue_id} (comment 1)."
        piped = await agent("comment", "-", env=env, stdin="line one\nline 'two'\n")
        assert piped.code == 0, piped.err

        used = await agent(
            "usage",
            "--turns",
            "3",
            "--input-tokens",
            "1200",
            "--output-tokens",
            "300",
            "--cost",
            "0.0042",
            "--model",
            "cheap-1",
            env=env,
        )
        assert used.out.strip() == (
            f"Run {run.id}: 3/5 turns, 1200 in + 300 out tokens, $0.0042, model cheap-1."
        )
        posted = await agent("summary", "Login fixed; a test guards it.", env=env)
        assert posted.out.strip() == "Posted summary 1 to your team chat."

        detail = (await agent("show", "--json", env=env)).json()
        assert [c["body"] for c in detail["comments"]] == ["looking at it", "line one\nline 'two'"]

        done = await agent("finish", "--outcome", "done", "--summary", "Fixed the login.", env=env)
        assert done.code == 0, done.err
        assert done.out.strip() == f"Run {run.id} ended succeeded (done). End your turn now."

        ended = await fleet.service.run(run.id)
        issue = await fleet.service.issue(issue_id)
        assert (ended.status, issue.status) == (RunStatus.SUCCEEDED, IssueStatus.DONE)
        assert (ended.turns, ended.input_tokens, ended.output_tokens) == (3, 1200, 300)
        assert (ended.cost, ended.model, ended.summary) == (0.0042, "cheap-1", "Fixed the login.")

        # The run token died with the run: the agent is told to stop.
        late = await agent("comment", "one more thing", env=env)
        assert late.code == 3
        assert late.err.strip() == (
            "fleetbot agent: this run is over; stop working and end your turn "
            "(a new run brings a new token)"
        )
        late_json = await agent("--json", "comment", "again", env=env)
        assert late_json.code == 3 and late_json.err == ""
        assert late_json.json() == {
            "ok": False,
            "error": "run_ended",
            "status": 401,
            "message": late.err.strip().removeprefix("fleetbot agent: "),
            "exit": 3,
        }


async def test_json_is_the_apis_own_answer(tmp_path: Path) -> None:
    async with live_fleet(tmp_path) as fleet:
        issue_id = await file_issue(fleet, "bishop", "Write the plan")
        run, token = await open_run(fleet, "bishop")
        env = run_env(fleet, run, token)
        inbox = await agent("inbox", "--json", env=env)
        [item] = inbox.json()
        assert (item["id"], item["status"], item["assignee_id"]) == (
            issue_id,
            "in_progress",
            "bishop",
        )
        me = (await agent("--json", "me", env=env)).json()
        assert (me["agent_id"], me["run_id"], me["role"]) == ("bishop", run.id, "cto")


async def test_file_takes_a_priority_and_the_backlog(tmp_path: Path) -> None:
    # The planner's instructions (core.queues.planner) tell agents to file this way.
    async with live_fleet(tmp_path) as fleet:
        await file_issue(fleet, "bishop", "Write the plan")
        run, token = await open_run(fleet, "bishop")
        env = run_env(fleet, run, token)
        later = await agent(
            "file", "--to", "ash", "--title", "Refactor", "--priority", "high", "--backlog", env=env
        )
        assert later.code == 0, later.err
        assert later.out.strip() == "Filed ALI-2 [backlog] !high @ash Refactor."
        issue = await fleet.service.issue("ALI-2")
        assert (issue.status, issue.priority) == (IssueStatus.BACKLOG, Priority.HIGH)
        wrong = await agent("file", "--to", "ash", "--title", "x", "--priority", "urgent", env=env)
        assert wrong.code == 2 and "invalid choice: 'urgent'" in wrong.err, wrong.err


async def test_refusals_say_what_to_do_next_with_their_exit_codes(tmp_path: Path) -> None:
    async with live_fleet(tmp_path) as fleet:
        issue_id = await file_issue(fleet, "bishop", "Held by bishop")
        run, token = await open_run(fleet, "bishop")
        env = run_env(fleet, run, token)
        await file_issue(fleet, "ash", "Ash's own work")
        ash_run, ash_token = await open_run(fleet, "ash")
        ash_env = run_env(fleet, ash_run, ash_token)

        # Another live run holds the issue: 409 lease_conflict, exit 5.
        held = await agent("claim", issue_id, env=ash_env)
        assert held.code == 5, held.err
        assert "another live run holds this issue" in held.err and "Leave it alone" in held.err

        missing = await agent("show", "ALI-99", env=env)
        assert missing.code == 4
        assert "`fleetbot agent inbox` lists yours" in missing.err
        # An id is one path segment: it cannot reach another route (here /api/v1/me).
        sneaky = await agent("--json", "show", "../me", env=env)
        assert sneaky.code in (2, 4) and sneaky.json()["error"] != "", sneaky.out

        # A role two agents hold: 422 naming them, exit 2.
        ambiguous = await agent("file", "--to", "cto", "--title", "More work", env=env)
        assert ambiguous.code == 2
        assert "ash" in ambiguous.err and "bishop" in ambiguous.err and "--to" in ambiguous.err

        bad_move = await agent("finish", "--outcome", "waiting", "--summary", "x", env=env)
        assert bad_move.code == 5 and "no open question" in bad_move.err, bad_move.err

        wrong_run = await agent("usage", "--turns", "1", "--run", ash_run.id, env=env)
        assert wrong_run.code == 3 and "FLEETBOT_RUN_ID" in wrong_run.err, wrong_run.err

        capped = await agent("usage", "--turns", "6", env=env)
        assert capped.code == 5 and "turn cap" in capped.err, capped.err


async def test_settings_come_from_flags_and_files_too(tmp_path: Path) -> None:
    async with live_fleet(tmp_path) as fleet:
        issue_id = await file_issue(fleet, "ripley", "Plan the quarter")
        run, token = await open_run(fleet, "ripley")
        token_file = tmp_path / "run.jwt"
        token_file.write_text(token + "\n")
        bare = {"PATH": run_env(fleet, run, token)["PATH"]}
        flags = ["--api-url", fleet.api_url + "/api/v1/", "--token-file", str(token_file)]
        shown = await agent("show", issue_id, *flags, env=bare)
        assert shown.code == 0 and shown.out.startswith(f"{issue_id} [in_progress]"), shown.err
        done = await agent(
            *flags,
            "finish",
            "--run",
            run.id,
            "--outcome",
            "blocked",
            "--summary",
            "need a budget",
            env=bare,
        )
        assert done.code == 0, done.err
        assert (await fleet.service.issue(issue_id)).status is IssueStatus.BLOCKED

        nothing = await agent("show", issue_id, env=bare)
        assert nothing.code == 2 and "FLEETBOT_API_URL" in nothing.err
        no_token = await agent("show", issue_id, "--api-url", fleet.api_url, env=bare)
        assert no_token.code == 3 and "FLEETBOT_TOKEN" in no_token.err
        no_run = await agent("finish", "--outcome", "done", "--summary", "x", *flags, env=bare)
        assert no_run.code == 2 and "FLEETBOT_RUN_ID" in no_run.err
        no_issue = await agent("show", *flags, env=bare)
        assert no_issue.code == 2 and "FLEETBOT_ISSUE_ID" in no_issue.err
        usage = await agent("claim", "--bogus", env=bare)
        assert usage.code == 2 and "unrecognized arguments: --bogus" in usage.err


async def test_an_unreachable_api_says_to_end_the_turn_with_the_summary() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    env = {"FLEETBOT_API_URL": f"http://127.0.0.1:{port}", "FLEETBOT_TOKEN": "t", "PATH": "/bin"}
    down = await agent("finish", "--run", "r1", "--outcome", "done", "--summary", "x", env=env)
    assert down.code == 6
    assert f"cannot reach fleetbot's API at http://127.0.0.1:{port}" in down.err
    assert "end your turn with your summary as the reply" in down.err
    assert json.loads((await agent("--json", "me", env=env)).out)["exit"] == 6
