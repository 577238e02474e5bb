"""What fleetbot's protocol costs an agent that uses `fleetbot agent`: LLM turns, CLI calls and API
requests per issue, measured on a real fleet.

The stack of `fleetbot run --no-bot` (store, scheduler, the agent API on a loopback port) runs
`--agents` agents that are examples/openai_agent.py under the `process` runtime, on a fake
OpenAI-compatible endpoint (tests/examples/fake_chat_model.py). `--issues` issues are filed,
alternating two kinds of work: the model finishes at once, or it comments on its progress first.
The fake model answers a tool call that failed by asking for it again, as a real model would, so
a protocol step that goes wrong costs its turns here too. A wrapper on the agents' PATH logs every
`fleetbot agent` command (the model's and the example's own `show` and `usage`) with its time.

    python bench/agent_cli.py [--agents N] [--issues N]

Prints, with targets:
- LLM turns on fleetbot's protocol per issue: model calls answered with a call to one of the
  example's fleetbot tools, each one `fleetbot agent` command (mean ≤ 2);
- `fleetbot agent` commands per issue, and API requests per issue (from /metrics);
- one `fleetbot agent` command's wall time, one after the other with no agent at work (p50 ≤
  0.5 s), and during the run; `fleetbot agent --help`'s (start-up alone);
- the issues done (all of them).
Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.models import IssueStatus, RunStatus  # noqa: E402
from tests.examples.example_fleet import ended_run, example_fleet, file_issue  # noqa: E402
from tests.examples.fake_chat_model import (  # noqa: E402
    Answer,
    Call,
    FakeChatModel,
    Say,
    ToolCall,
    Tools,
)

MAX_PROTOCOL_TURNS = 2.0
MAX_CLI_P50 = 0.5  # seconds
PROTOCOL_TOOLS = {"finish", "comment", "ask", "file_issue"}
FLEETBOT = Path(sys.executable).with_name("fleetbot")
# What the CLI prints when the step worked; anything else is a failure the model retries.
WORKED = re.compile(r"^(Commented on|Run \S+ ended|Filed|Asked)")
# One line when a command starts and one when it ends: a finish's process may be stopped by the
# runtime as soon as the run is over, before its end is logged.
WRAPPER = """#!/bin/sh
start=$(date +%s%N)
echo "start $start $2" >> "{log}"
"{real}" "$@"
code=$?
echo "end $start $(date +%s%N) $2 $code" >> "{log}"
exit $code
"""


def worker(call: Call) -> Answer:
    """Finish at once, or comment then finish (by the issue's title); repeat what failed."""
    results = call.tool_results()
    if results and not WORKED.match(results[-1]):
        previous = [m for m in call.messages if m.get("role") == "assistant"][-1]
        fn = previous["tool_calls"][0]["function"]
        return Tools(ToolCall(fn["name"], json.loads(fn["arguments"])))
    steps = ["comment", "finish"] if "[comment]" in call.prompt else ["finish"]
    done = sum(1 for r in results if WORKED.match(r))
    if done >= len(steps):
        return Say("done")
    if steps[done] == "comment":
        return Tools(ToolCall("comment", {"text": "halfway: the tests pass locally"}))
    return Tools(ToolCall("finish", {"outcome": "done", "summary": "did the task"}))


def protocol_turns(calls: list[Call]) -> int:
    return sum(
        1
        for c in calls
        if isinstance(c.answer, Tools) and any(t.name in PROTOCOL_TOOLS for t in c.answer.calls)
    )


def api_requests(metrics: str) -> int:
    """Agent API requests in /metrics (the scrape itself and health checks left out)."""
    total = 0.0
    for line in metrics.splitlines():
        found = re.match(r'fleetbot_api_requests_total\{route="([^"]+)",status="\d+"\} (\S+)', line)
        if found and found[1].startswith("/api/"):
            total += float(found[2])
    return int(total)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def quiet_calls(api_url: str, token_file: Path, times: int = 10) -> list[float]:
    """Wall times of `fleetbot agent show`, one after the other, with no agent at work."""
    env = {"PATH": "/usr/bin:/bin", "FLEETBOT_API_URL": api_url, "FLEETBOT_ISSUE_ID": "LAB-1"}
    seconds = []
    for _ in range(times):
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            str(FLEETBOT),
            "agent",
            "show",
            "--token-file",
            str(token_file),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
        )
        if await proc.wait() != 0:
            raise SystemExit("fleetbot agent show failed")
        seconds.append(time.monotonic() - started)
    return seconds


def read_log(log: Path) -> tuple[dict[str, int], list[float], int]:
    """(commands started, by name; wall times of those that ended; how many failed)."""
    started: dict[str, int] = {}
    seconds: list[float] = []
    failed = 0
    for fields in (line.split() for line in log.read_text().splitlines()):
        if fields[0] == "start":
            started[fields[2]] = started.get(fields[2], 0) + 1
        else:
            _, start, end, _cmd, code = fields
            seconds.append((int(end) - int(start)) / 1e9)
            failed += code != "0"
    return started, seconds, failed


async def run(args: argparse.Namespace, tmp: Path) -> int:
    log = tmp / "cli.log"
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "fleetbot"
    wrapper.write_text(WRAPPER.format(real=FLEETBOT, log=log))
    wrapper.chmod(0o755)
    started = time.monotonic()
    with FakeChatModel(worker) as model:
        fleet_cm = example_fleet(tmp, model.base_url, agents=args.agents, path=str(bin_dir))
        async with fleet_cm as fleet:
            work = []
            for n in range(args.issues):
                agent = f"worker-{n % args.agents}"
                title = f"Task {n} {'[comment]' if n % 2 else '[finish]'}"
                work.append((agent, await file_issue(fleet, agent, title, "Do the task.")))
            runs = [await ended_run(fleet, agent, issue, within=120) for agent, issue in work]
            issues = [await fleet.service.issue(issue) for _, issue in work]
            wall = time.monotonic() - started
            async with httpx.AsyncClient() as client:
                metrics = (await client.get(f"{fleet.api_url}/metrics")).text
            quiet = await quiet_calls(fleet.api_url, fleet.auth.token_file("worker-0"))
    n = len(work)
    per_issue = [
        protocol_turns([c for c in model.calls if f"Issue {issue_id}:" in c.prompt])
        for _, issue_id in work
    ]
    kinds: dict[str, list[int]] = {"[finish]": [], "[comment]": []}
    for turns, issue in zip(per_issue, issues, strict=True):
        kinds["[comment]" if "[comment]" in issue.title else "[finish]"].append(turns)
    commands, seconds, failed_cli = read_log(log)
    done = sum(1 for i in issues if i.status is IssueStatus.DONE)
    ok_runs = sum(1 for r in runs if r.status is RunStatus.SUCCEEDED)
    mean_turns = statistics.mean(per_issue)
    quiet_p50 = statistics.median(quiet)
    ok = {
        "turns": mean_turns <= MAX_PROTOCOL_TURNS,
        "cli": quiet_p50 <= MAX_CLI_P50,
        "done": done == n and ok_runs == n,
    }

    def mark(key: str) -> str:
        return "ok" if ok[key] else "MISSED"

    print(f"agents: {args.agents} (examples/openai_agent.py, process runtime), issues: {n}")
    print(
        f"LLM turns on fleetbot's protocol per issue: {mean_turns:.2f} mean, max "
        f"{max(per_issue)} (finish only: {statistics.mean(kinds['[finish]']):.2f}; comment + "
        f"finish: {statistics.mean(kinds['[comment]'] or [0]):.2f}; target mean ≤ "
        f"{MAX_PROTOCOL_TURNS:.0f}) {mark('turns')}"
    )
    counts = ", ".join(f"{cmd} {count / n:.2f}" for cmd, count in sorted(commands.items()))
    print(
        f"`fleetbot agent` commands per issue: {sum(commands.values()) / n:.2f} ({counts}); "
        f"{failed_cli} failed"
    )
    print(f"API requests per issue: {api_requests(metrics) / n:.2f} (from /metrics)")
    print(
        f"one `fleetbot agent` command (show, one after the other): p50 {quiet_p50:.3f} s, "
        f"min {min(quiet):.3f} s (target p50 ≤ {MAX_CLI_P50} s) {mark('cli')}; during the run, "
        f"{args.agents} agents at once: p50 {percentile(seconds, 50):.3f} s, p90 "
        f"{percentile(seconds, 90):.3f} s; `fleetbot agent --help`: {args.help_seconds:.3f} s"
    )
    tokens = sum(r.input_tokens + r.output_tokens for r in runs) / n
    print(f"model tokens per issue (the runs' usage as reported): {tokens:.0f}")
    print(f"issues done: {done}/{n}, runs succeeded: {ok_runs}/{n} {mark('done')}")
    print(f"wall: {wall:.1f} s for the issues")
    return 0 if all(ok.values()) else 1


def help_seconds() -> float:
    """The median wall time of `fleetbot agent --help`: start-up alone."""
    times = []
    for _ in range(5):
        started = time.monotonic()
        subprocess.run([str(FLEETBOT), "agent", "--help"], capture_output=True, check=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--issues", type=int, default=12)
    args = parser.parse_args()
    args.help_seconds = help_seconds()
    with tempfile.TemporaryDirectory(prefix="agent-cli-") as tmp:
        return asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    raise SystemExit(main())
