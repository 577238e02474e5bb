"""The `claude-code` and `codex` presets of the `process` runtime, without the real CLIs: the argv
each builds, the placeholders, the config rules, and a real subprocess that prints what each CLI
prints, read into the run's reply, usage and session id. The real CLIs run in tests/agents."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from runtime_fakes import TOKEN, job

from core.config import ProcessRuntime
from core.errors import AgentFailure, ProcessFailed
from core.runtimes.presets import (
    PROTOCOL,
    ClaudeJson,
    CodexJsonl,
    command_template,
    fill,
    placeholder_values,
)
from core.runtimes.process import ProcessAgentRuntime

BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}

# What Claude Code 2.1 prints with `-p --output-format json` (the fields the preset reads).
CLAUDE_RESULT = {
    "type": "result",
    "subtype": "success",
    "is_error": False,
    "num_turns": 4,
    "result": "Rotated the logs; ACME-7 is done.",
    "session_id": "0b8f3c1e-2d4a-4e6f-9a1b-3c5d7e9f1a2b",
    "total_cost_usd": 0.0421,
    "usage": {
        "input_tokens": 120,
        "cache_creation_input_tokens": 3000,
        "cache_read_input_tokens": 9000,
        "output_tokens": 310,
    },
    "modelUsage": {
        "claude-haiku-4-5": {"costUSD": 0.0011},
        "claude-sonnet-4-5": {"costUSD": 0.041},
    },
}
# What Codex 0.171 prints with `exec --json`: one JSON event per line.
CODEX_EVENTS = [
    {"type": "thread.started", "thread_id": "019a-thread"},
    {"type": "turn.started"},
    {"type": "item.completed", "item": {"type": "command_execution", "command": "ls"}},
    {"type": "item.completed", "item": {"type": "agent_message", "text": "Counted 12 otters."}},
    {"type": "turn.completed", "usage": {"input_tokens": 5000, "output_tokens": 200}},
]


def preset(name: str, **kw: Any) -> ProcessRuntime:
    return ProcessRuntime(kind="process", preset=name, **kw)  # type: ignore[arg-type]


def test_claude_code_runs_claude_headless_with_the_prompt_after_p() -> None:
    argv = command_template(preset("claude-code", args=["--model", "{model}"]))
    assert argv[:3] == ["claude", "-p", "{prompt}"]
    assert argv[argv.index("--output-format") + 1] == "json"
    assert argv[argv.index("--max-turns") + 1] == "{max_turns}"
    assert argv[argv.index("--append-system-prompt") + 1] == PROTOCOL
    # Only the one tool it reports with, and `args` after the preset's own flags.
    assert argv[argv.index("--allowedTools") + 1] == "Bash(fleetbot agent *)"
    assert argv[-2:] == ["--model", "{model}"]


def test_codex_runs_exec_json_with_the_prompt_last_and_args_before_it() -> None:
    argv = command_template(preset("codex", command=["/opt/codex"], args=["-m", "gpt-5-mini"]))
    assert argv[:3] == ["/opt/codex", "exec", "--json"]
    assert 'sandbox_mode="workspace-write"' in argv
    assert "sandbox_workspace_write.network_access=true" in argv
    assert argv[-4:] == ["-m", "gpt-5-mini", "--", "{prompt}"]


def test_a_plain_command_is_run_as_given() -> None:
    config = ProcessRuntime(kind="process", command=["python3", "agent.py", "{issue_id}"])
    assert command_template(config) == ["python3", "agent.py", "{issue_id}"]


def test_placeholders_are_filled_once_and_the_prompt_has_no_token() -> None:
    template = ["x", "{prompt}", "--issue={issue_id}", "{run_id}", "{max_turns}", "{other}"]
    values = placeholder_values(job(), template)
    filled = fill(template, values)
    assert filled[2:] == ["--issue=ACME-7", "run-42", "12", "{other}"]
    assert "ACME-7" in filled[1] and "Fix the login page" in filled[1]
    assert TOKEN not in filled[1] and "fleetbot agent" in filled[1]
    # A value that looks like a placeholder is not read again.
    assert fill(["{issue_id}"], {"issue_id": "{run_id}", "run_id": "r"}) == ["{run_id}"]


def test_the_prompt_is_built_only_when_it_is_used() -> None:
    assert "prompt" not in placeholder_values(job(), ["agent", "{issue_id}"])


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({}, "give `command`"),
        ({"command": ["a"], "args": ["-v"]}, "`args` adds flags to a preset's command"),
        ({"command": ["a"], "env": {"FLEETBOT_TOKEN": "x"}}, "fleetbot sets the FLEETBOT_*"),
        ({"command": ["a"], "env": {"OPENAI_API_KEY": "sk-1"}}, "move it to `secret_env"),
        (
            {"command": ["a"], "env": {"A_KEY": "1"}, "secret_env": {"A_KEY": {"env": "K"}}},
            "looks like a secret",
        ),
        (
            {"command": ["a"], "env": {"MODE": "1"}, "secret_env": {"MODE": {"env": "K"}}},
            "in both env and secret_env",
        ),
    ],
)
def test_a_process_config_that_cannot_work_is_refused_with_the_fix(
    fields: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValidationError, match=None) as caught:
        ProcessRuntime(kind="process", **fields)
    assert says in str(caught.value)


def test_an_unknown_preset_is_refused() -> None:
    with pytest.raises(ValidationError, match="claude-code"):
        preset("aider")


def test_claude_json_reads_the_reply_tokens_cost_model_and_session() -> None:
    parser = ClaudeJson([])
    for line in ["not json", '{"type": "system"}', json.dumps(CLAUDE_RESULT)]:
        parser.feed(line)
    report = parser.report()
    assert report.summary == "Rotated the logs; ACME-7 is done." and report.error == ""
    assert report.usage is not None
    assert (report.usage.turns, report.usage.input_tokens, report.usage.output_tokens) == (
        4,
        12120,  # cache writes and reads are input too
        310,
    )
    assert (report.usage.cost, report.usage.model) == (0.0421, "claude-sonnet-4-5")
    assert report.external_id == CLAUDE_RESULT["session_id"]


def test_claude_json_turns_an_error_result_into_the_reason() -> None:
    parser = ClaudeJson([])
    parser.feed(json.dumps({**CLAUDE_RESULT, "subtype": "error_max_turns", "is_error": True}))
    report = parser.report()
    assert report.summary == "" and report.error.startswith(
        "Claude Code ended with error_max_turns"
    )
    assert report.usage is not None and report.usage.cost == 0.0421  # what it spent still counts


def test_codex_jsonl_sums_turns_and_keeps_the_last_reply() -> None:
    parser = CodexJsonl(["codex", "exec", "-c", 'model="gpt-5-mini"'])
    for event in [*CODEX_EVENTS, *CODEX_EVENTS[1:]]:
        parser.feed(json.dumps(event))
    report = parser.report()
    assert report.summary == "Counted 12 otters." and report.external_id == "019a-thread"
    assert report.usage is not None
    assert (report.usage.turns, report.usage.input_tokens, report.usage.output_tokens) == (
        2,
        10000,
        400,
    )
    assert (report.usage.cost, report.usage.model) == (0.0, "gpt-5-mini")


def test_codex_jsonl_reports_a_failed_turn() -> None:
    parser = CodexJsonl(["codex", "-m", "m1"])
    parser.feed(json.dumps({"type": "turn.failed", "error": {"message": "stream disconnected"}}))
    assert parser.report().error == "Codex's turn failed: stream disconnected"


def _fake_cli(tmp_path: Path, lines: list[dict[str, Any]], exit_code: int = 0) -> Path:
    """A script standing in for the CLI: records its argv and environment, prints `lines`."""
    script = tmp_path / "cli.py"
    script.write_text(
        "import json, os, sys\n"
        f"open({str(tmp_path / 'seen.json')!r}, 'w').write(json.dumps("
        "{'argv': sys.argv[1:], 'env': dict(os.environ)}))\n"
        f"for line in json.loads({json.dumps([json.dumps(x) for x in lines])!r}):\n"
        "    print(line, flush=True)\n"
        f"sys.exit({exit_code})\n"
    )
    return script


async def test_a_preset_run_records_what_the_cli_printed(tmp_path: Path) -> None:
    script = _fake_cli(tmp_path, [{"type": "system", "subtype": "init"}, CLAUDE_RESULT])
    config = preset(
        "claude-code",
        command=[sys.executable, str(script)],
        secret_env={"ANTHROPIC_API_KEY": {"env": "MY_ANTHROPIC_KEY"}},
    )
    async with ProcessAgentRuntime(config, {**BASE_ENV, "MY_ANTHROPIC_KEY": "sk-ant-1"}) as rt:
        result = await rt.dispatch(job())
    assert result.finished and result.summary == "Rotated the logs; ACME-7 is done."
    assert result.usage is not None and result.usage.cost == 0.0421
    assert result.external_id == CLAUDE_RESULT["session_id"]
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["argv"][0] == "-p" and "ACME-7" in seen["argv"][1]
    assert TOKEN not in json.dumps(seen["argv"]), "the token is never on a command line"
    env = seen["env"]
    assert env["FLEETBOT_TOKEN"] == TOKEN and env["ANTHROPIC_API_KEY"] == "sk-ant-1"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert "MY_ANTHROPIC_KEY" not in env, "only what the agent needs reaches it"
    # The fleetbot that runs this is first on the agent's PATH, so it can report back.
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)


async def test_a_failing_cli_fails_the_run_with_what_it_said(tmp_path: Path) -> None:
    failed = {**CLAUDE_RESULT, "subtype": "error_during_execution", "is_error": True}
    failed["result"] = f"API key {TOKEN} rejected"
    script = _fake_cli(tmp_path, [failed], exit_code=1)
    config = preset("claude-code", command=[sys.executable, str(script)])
    async with ProcessAgentRuntime(config, BASE_ENV) as rt:
        with pytest.raises(ProcessFailed) as caught:
            await rt.dispatch(job())
    message = caught.value.message
    assert "exited with code 1: Claude Code ended with error_during_execution" in message
    assert TOKEN not in message and "[redacted]" in message


async def test_a_missing_secret_fails_the_run_naming_where_to_put_it(tmp_path: Path) -> None:
    script = _fake_cli(tmp_path, [CLAUDE_RESULT])
    config = preset(
        "codex",
        command=[sys.executable, str(script)],
        secret_env={"OPENAI_API_KEY": {"env": "OPENAI_API_KEY"}},
    )
    async with ProcessAgentRuntime(config, BASE_ENV) as rt:
        with pytest.raises(
            AgentFailure, match=r"OPENAI_API_KEY for process .* is empty or missing"
        ):
            await rt.dispatch(job())
    assert not (tmp_path / "seen.json").exists(), "nothing ran"
