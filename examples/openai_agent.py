#!/usr/bin/env python3
"""A small fleetbot agent for any OpenAI-compatible chat-completions endpoint.

fleetbot's `process` runtime starts it once per run; it works that run's issue and exits:

    runtime:
      kind: process
      command: [python3, /path/to/fleetbot/examples/openai_agent.py]
      env: {OPENAI_BASE_URL: "https://api.openai.com/v1"}
      secret_env: {OPENAI_API_KEY: {env: OPENAI_API_KEY}}    # from fleetbot's environment

Environment (the runtime's `env` above, plus the FLEETBOT_* variables fleetbot sets):
  OPENAI_BASE_URL      the endpoint, ending in /v1 (default https://api.openai.com/v1)
  OPENAI_API_KEY       its key; or OPENAI_API_KEY_FILE, a file holding it (no secret in the config)
  OPENAI_MODEL         the cheap model, used unless the issue asks for more (default gpt-4o-mini)
  OPENAI_STRONG_MODEL  the stronger model (default gpt-4o)
  OPENAI_PRICE         USD per million input and output tokens, "0.15,0.60" (default: PRICES)

Which model works the issue: the issue's own `model` field (`fleetbot agent file --model strong`,
or set when it was filed) wins, else a line `model: strong` in its body; `strong` and `cheap`
name the two models above, any other name is sent as is. With neither, the cheap model.

How: `fleetbot agent show` reads the issue; the model gets it with four tools (comment, ask,
file_issue, finish), each a `fleetbot agent` command; after every model call the run's usage
so far goes to `fleetbot agent usage` (tokens from the endpoint's `usage`, cost from its
`usage.cost` when it reports one, else from the price table). The loop ends when the model calls
finish. A plain-text answer instead is printed and the script exits 0: fleetbot keeps it as the
run's summary and puts the issue in review. Standard library only: any python3 runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

DEFAULT_CHEAP, DEFAULT_STRONG = "gpt-4o-mini", "gpt-4o"
# USD per million (input, output) tokens; a dated model name matches its prefix.
PRICES = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}
# `fleetbot agent` exit codes after which this run is over: token refused, API unreachable.
RUN_OVER = {3, 6}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": about,
            "parameters": {"type": "object", "properties": props, "required": required},
        },
    }
    for name, about, props, required in [
        (
            "finish",
            "End your work on the issue. Call it exactly once, last.",
            {
                "outcome": {"type": "string", "enum": ["done", "blocked", "failed", "waiting"]},
                "summary": {"type": "string", "description": "What you did, or what you need."},
            },
            ["outcome", "summary"],
        ),
        ("comment", "Comment on the issue.", {"text": {"type": "string"}}, ["text"]),
        (
            "ask",
            "Ask the owner a question (then finish with outcome waiting).",
            {
                "question": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "string"}},
                "approval": {"type": "boolean", "description": "an Approve/Reject question"},
            },
            ["question"],
        ),
        (
            "file_issue",
            "File a new issue for an agent id or role of your company.",
            {
                "assignee": {"type": "string"},
                "title": {"type": "string"},
                "body": {"type": "string"},
            },
            ["assignee", "title"],
        ),
    ]
]


class RunOver(Exception):
    """fleetbot says this run is over (or cannot be reached): stop, saying why."""


def fleetbot(*args: str) -> tuple[int, str]:
    """Run `fleetbot agent ARGS`; (exit code, what it printed)."""
    found = shutil.which("fleetbot")
    cli = [found, "agent"] if found else [sys.executable, "-m", "fleetbot.agent"]
    done = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300)
    return done.returncode, (done.stdout + done.stderr).strip()


def must(*args: str) -> str:
    """`fleetbot agent ARGS` that has to work (show, usage): RunOver when it does not."""
    code, text = fleetbot(*args)
    if code != 0:
        raise RunOver(text)
    return text


def pick_model(issue: dict[str, Any], env: dict[str, str]) -> str:
    cheap = env.get("OPENAI_MODEL") or DEFAULT_CHEAP
    strong = env.get("OPENAI_STRONG_MODEL") or DEFAULT_STRONG
    asked = (issue.get("model") or "").strip()
    line = re.search(r"(?im)^\s*model:\s*(\S+)\s*$", issue.get("body") or "")
    asked = asked or (line[1] if line else "")
    return {"strong": strong, "cheap": cheap, "": cheap}.get(asked.lower(), asked)


def price(model: str, env: dict[str, str]) -> tuple[float, float] | None:
    if env.get("OPENAI_PRICE"):
        given, _, taken = env["OPENAI_PRICE"].partition(",")
        return float(given), float(taken or given)
    for name in sorted(PRICES, key=len, reverse=True):  # gpt-4o-mini before gpt-4o
        if model.startswith(name):
            return PRICES[name]
    return None


def chat(env: dict[str, str], model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """One chat-completions call; SystemExit with the endpoint's answer when it fails."""
    base = (env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
    key = env.get("OPENAI_API_KEY", "")
    if not key and env.get("OPENAI_API_KEY_FILE"):
        with open(env["OPENAI_API_KEY_FILE"], encoding="utf-8") as f:
            key = f.read().strip()
    body = json.dumps({"model": model, "messages": messages, "tools": TOOLS}).encode()
    request = urllib.request.Request(
        f"{base}/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            return dict(json.load(answer))
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"the model endpoint answered {exc.code}: {exc.read()[:300]!r}") from exc
    except (urllib.error.URLError, TimeoutError) as exc:
        raise SystemExit(f"cannot reach the model endpoint {base}: {exc}") from exc


def brief(issue: dict[str, Any], env: dict[str, str]) -> str:
    """The issue as the model's first user message."""
    lines = [f"Issue {issue['id']}: {issue['title']}", issue.get("body") or "(no description)"]
    lines += [f"Comment by {c['author']}: {c['body']}" for c in issue.get("comments") or []]
    for q in issue.get("questions") or []:
        lines.append(f"Your question Q{q['id']} ({q['text']}): {q['status']} {q.get('answer')}")
    why = env.get("FLEETBOT_WAKE_REASON", "")  # assigned, heartbeat, answer, comment, approval
    if env.get("FLEETBOT_WAKE_NOTE"):
        why = f"{why}: {env['FLEETBOT_WAKE_NOTE']}"
    if why:
        lines.append(f"Woken because: {why}")
    return "\n".join(lines)


def call_tool(name: str, args: dict[str, Any]) -> tuple[str, bool]:
    """Run one tool call through `fleetbot agent`; (its output, whether the run is finished).
    A refusal goes back to the model as the tool's result (it says what to do instead)."""
    text = str(args.get("text") or args.get("question") or "")
    if name == "finish":
        summary = str(args.get("summary") or "") or "(no summary)"
        argv = ["finish", f"--outcome={args.get('outcome', 'done')}", f"--summary={summary}"]
    elif name == "comment":
        argv = ["comment", "--", text]  # `--`: a text may start with a dash
    elif name == "ask":
        argv = ["ask", *(f"--choice={c}" for c in args.get("choices") or [])]
        argv += [*(["--approval"] if args.get("approval") else []), "--", text]
    elif name == "file_issue":
        argv = ["file", f"--to={args.get('assignee')}", f"--title={args.get('title')}"]
        argv.append(f"--body={args.get('body') or ''}")
    else:
        return f"no tool {name!r}; use finish, comment, ask or file_issue", False
    code, output = fleetbot(*argv)
    if code in RUN_OVER:
        raise RunOver(output)
    return output, name == "finish" and code == 0


def work(env: dict[str, str]) -> str:
    """Work the run's issue; the last words (the summary when the model never called finish)."""
    issue = json.loads(must("show", "--json"))
    model = pick_model(issue, env)
    rates = price(model, env)
    max_turns = int(env.get("FLEETBOT_MAX_TURNS") or 10)
    messages: list[dict[str, Any]] = [
        {
            "role": "system",
            "content": f"You are {env.get('FLEETBOT_AGENT_ID', 'an agent')}, working one issue "
            "for fleetbot. Do what it asks, then call finish once with a short summary. Use "
            "comment for progress, ask (then finish with outcome waiting) if only the owner "
            "can decide.",
        },
        {"role": "user", "content": brief(issue, env)},
    ]
    used = {"turns": 0, "input": 0, "output": 0, "cost": 0.0}
    for _ in range(max_turns):
        answer = chat(env, model, messages)
        usage = answer.get("usage") or {}
        used["turns"] += 1
        used["input"] += int(usage.get("prompt_tokens") or 0)
        used["output"] += int(usage.get("completion_tokens") or 0)
        if isinstance(usage.get("cost"), int | float):  # the endpoint's own figure (OpenRouter)
            used["cost"] += float(usage["cost"])
        elif rates is not None:
            used["cost"] += (
                int(usage.get("prompt_tokens") or 0) * rates[0]
                + int(usage.get("completion_tokens") or 0) * rates[1]
            ) / 1e6
        must(
            "usage",
            f"--turns={used['turns']}",
            f"--input-tokens={used['input']}",
            f"--output-tokens={used['output']}",
            f"--cost={used['cost']:.6f}",
            f"--model={answer.get('model') or model}",
        )
        message = answer["choices"][0]["message"]
        calls = message.get("tool_calls") or []
        if not calls:
            return str(message.get("content") or "").strip()
        messages.append(
            {"role": "assistant", "content": message.get("content"), "tool_calls": calls}
        )
        finished = False
        for call in calls:
            try:
                args = json.loads(call["function"].get("arguments") or "{}")
            except ValueError:
                args = {}
            result, ended = call_tool(call["function"]["name"], args)
            print(f"{call['function']['name']}: {result}", file=sys.stderr)
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
            finished = finished or ended
        if finished:
            return result
    summary = f"stopped after {max_turns} model calls without finishing"
    must("finish", "--outcome", "blocked", "--summary", summary)
    return summary


def main() -> int:
    env = dict(os.environ)
    try:
        print(work(env))
    except RunOver as over:
        # fleetbot ended the run or cannot be reached: these words become the run's summary.
        print(f"stopped: {over}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
