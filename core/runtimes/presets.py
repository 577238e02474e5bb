"""Ready-made `process` commands for coding-agent CLIs, and the placeholders any command may use.

`runtime: {kind: process, preset: claude-code}` runs Claude Code headless, `preset: codex` runs
`codex exec`; each gets the wake message (without the token: that is in FLEETBOT_TOKEN) as its
prompt, a short standing instruction to report through `fleetbot agent`, and only the
permission it needs for that (Claude Code: `Bash(fleetbot agent *)`; Codex: its
workspace-write sandbox with the network on, so `fleetbot agent` reaches the API). `command`
then names the program (default `claude` / `codex`), `args` adds flags. What the CLI prints is
machine-readable (`--output-format json`, `exec --json`), and a preset reads it as the run
goes: the reply becomes the summary, and the tokens (and, for Claude Code, the cost) it
measured become the run's usage, so real spend is recorded without the model reporting it.

Placeholders, in `command` and `args` alike: {prompt} {issue_id} {run_id} {model}
{max_turns}. Other braces are left as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.config import ProcessRuntime
from core.runtimes.base import Dispatch, TurnUsage
from core.runtimes.wake import wake_message

PLACEHOLDERS = ("prompt", "issue_id", "run_id", "model", "max_turns")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
# What the agent must find on its PATH to report back.
AGENT_COMMAND = "fleetbot"
# The standing instruction (a system / developer prompt): the wake message says what to do now.
PROTOCOL = (
    "fleetbot started you, unattended, for one run on one issue: nobody reads this session. "
    "Report through the `fleetbot agent` shell command (already set up; `fleetbot agent skill` "
    "shows how): `fleetbot agent show` reads the issue, `fleetbot agent comment TEXT` tells "
    "the owner something, `fleetbot agent ask TEXT` asks them, and every run ends with "
    '`fleetbot agent finish --outcome done|failed|blocked --summary "…"`.'
)
MAX_LINE = 4 << 20  # a longer line of output is not parsed (a usage line is a few KB)


@dataclass(frozen=True, slots=True)
class Report:
    """What a preset read from the CLI's output."""

    summary: str = ""  # the agent's last reply
    usage: TurnUsage | None = None
    external_id: str | None = None  # the CLI's session / thread id
    error: str = ""  # what the CLI said went wrong, if it did


class OutputParser(Protocol):
    def feed(self, line: str) -> None: ...

    def report(self) -> Report: ...


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    program: str
    head: tuple[str, ...]  # after the program, before the runtime's `args`
    tail: tuple[str, ...]  # after `args`
    env: Mapping[str, str]  # defaults; the runtime's `env` wins
    parser: Callable[[Sequence[str]], OutputParser]  # given the argv it reads the output of
    needs: tuple[str, ...] = field(default=(AGENT_COMMAND,))  # commands the agent must find


def _loads(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _count(value: object) -> int:
    return int(value) if isinstance(value, int | float) and value >= 0 else 0


def _flag(argv: Sequence[str], *names: str) -> str | None:
    """The value of the last `--name value` / `--name=value` in argv."""
    found = None
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                found = argv[i + 1]
            elif arg.startswith(name + "="):
                found = arg[len(name) + 1 :]
    return found


def _codex_setting(argv: Sequence[str], key: str) -> str | None:
    """The last `-c key=value` in argv, TOML quotes taken off."""
    found = None
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-c", "--config") and argv[i + 1].startswith(key + "="):
            found = argv[i + 1][len(key) + 1 :].strip().strip("\"'")
    return found or None


class ClaudeJson:
    """`claude -p --output-format json`: one `{"type": "result", …}` object at the end."""

    def __init__(self, argv: Sequence[str]) -> None:
        self._result: dict[str, Any] | None = None

    def feed(self, line: str) -> None:
        value = _loads(line)
        if value is not None and value.get("type") == "result":
            self._result = value

    def report(self) -> Report:
        r = self._result
        if r is None:
            return Report()
        usage = r.get("usage") if isinstance(r.get("usage"), dict) else {}
        assert isinstance(usage, dict)
        models = r.get("modelUsage") if isinstance(r.get("modelUsage"), dict) else {}
        assert isinstance(models, dict)
        # The main model is the one that cost the most; side calls (titles, …) use a small one.
        model = max(
            models,
            key=lambda m: models[m].get("costUSD", 0) if isinstance(models[m], dict) else 0,
            default=None,
        )
        cost = r.get("total_cost_usd")
        text = r.get("result")
        error = ""
        if r.get("is_error") or r.get("subtype", "success") != "success":
            said = text if isinstance(text, str) and text.strip() else ""
            error = f"Claude Code ended with {r.get('subtype') or 'an error'}" + (
                f": {said}" if said else ""
            )
        return Report(
            summary=text if isinstance(text, str) and not error else "",
            usage=TurnUsage(
                turns=_count(r.get("num_turns")),
                input_tokens=_count(usage.get("input_tokens"))
                + _count(usage.get("cache_creation_input_tokens"))
                + _count(usage.get("cache_read_input_tokens")),
                output_tokens=_count(usage.get("output_tokens")),
                cost=float(cost) if isinstance(cost, int | float) and cost >= 0 else 0.0,
                model=str(model) if model else None,
            ),
            external_id=str(r["session_id"]) if r.get("session_id") else None,
            error=error,
        )


class CodexJsonl:
    """`codex exec --json`: JSONL events; `turn.completed` carries the turn's token usage.

    Codex reports tokens but no price, so the cost stays 0 unless the agent reports it
    (`fleetbot agent usage --cost`). The model is the one the command line asks for.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        self._model = _flag(argv, "-m", "--model") or _codex_setting(argv, "model")
        self._thread: str | None = None
        self._turns = self._input = self._output = 0
        self._reply = ""
        self._error = ""

    def feed(self, line: str) -> None:
        event = _loads(line)
        if event is None:
            return
        kind = event.get("type")
        if kind == "thread.started" and event.get("thread_id"):
            self._thread = str(event["thread_id"])
        elif kind == "turn.completed":
            usage = event.get("usage") if isinstance(event.get("usage"), dict) else {}
            assert isinstance(usage, dict)
            self._turns += 1
            self._input += _count(usage.get("input_tokens"))
            self._output += _count(usage.get("output_tokens"))
        elif kind == "item.completed":
            item = event.get("item") if isinstance(event.get("item"), dict) else {}
            assert isinstance(item, dict)
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                self._reply = item["text"]
        elif kind == "turn.failed":
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            assert isinstance(error, dict)
            self._error = f"Codex's turn failed: {error.get('message') or 'no reason given'}"
        elif kind == "error" and event.get("message"):
            self._error = f"Codex: {event['message']}"

    def report(self) -> Report:
        usage = None
        if self._turns:
            usage = TurnUsage(self._turns, self._input, self._output, 0.0, self._model)
        return Report(self._reply, usage, self._thread, self._error)


PRESETS: dict[str, Preset] = {
    "claude-code": Preset(
        name="claude-code",
        program="claude",
        # The prompt goes right after -p: --allowedTools takes several values and would
        # swallow a positional prompt that followed it.
        head=(
            "-p",
            "{prompt}",
            "--output-format",
            "json",
            "--max-turns",
            "{max_turns}",
            "--append-system-prompt",
            PROTOCOL,
            "--allowedTools",
            f"Bash({AGENT_COMMAND} agent *)",
        ),
        tail=(),
        # No update checks, telemetry or error reports from an unattended agent.
        env={"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"},
        parser=ClaudeJson,
    ),
    "codex": Preset(
        name="codex",
        program="codex",
        head=(
            "exec",
            "--json",
            "--skip-git-repo-check",
            # A setting, not `--sandbox`, so `args` can still pass --sandbox or
            # --dangerously-bypass-approvals-and-sandbox (clap refuses a second --sandbox).
            "-c",
            'sandbox_mode="workspace-write"',
            # fleetbot's API is on the network, loopback included: the sandbox blocks it.
            "-c",
            "sandbox_workspace_write.network_access=true",
            # A login shell re-reads /etc/profile, which resets PATH on Debian and loses
            # the folder `fleetbot` is in.
            "-c",
            "allow_login_shell=false",
            "-c",
            "developer_instructions=" + json.dumps(PROTOCOL),
        ),
        tail=("--", "{prompt}"),
        env={},
        parser=CodexJsonl,
    ),
}


def preset_of(config: ProcessRuntime) -> Preset | None:
    return PRESETS[config.preset] if config.preset else None


def command_template(config: ProcessRuntime) -> list[str]:
    """The argv to run, placeholders unfilled."""
    preset = preset_of(config)
    if preset is None:
        assert config.command, "the config validates: no preset means a command"
        return list(config.command)
    program = list(config.command) if config.command else [preset.program]
    return [*program, *preset.head, *config.args, *preset.tail]


def placeholder_values(job: Dispatch, template: Sequence[str]) -> dict[str, str]:
    """What each placeholder stands for in this run (the prompt only if one is used)."""
    values = {
        "issue_id": job.issue_id,
        "run_id": job.run_id,
        "model": job.model,
        "max_turns": str(job.max_turns),
    }
    if any("{prompt}" in arg for arg in template):
        values["prompt"] = wake_message(job, with_token=False)
    return values


def fill(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Each known `{name}` replaced by its value, in one pass (a value is never re-read)."""
    return [_PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), arg) for arg in template]
