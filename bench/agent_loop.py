"""Real agents, end to end: a fleet of OpenClaw agents on a real gateway, on a fake model.

The real gateway (openclaw from npm, installed by scripts/install_openclaw.sh into a cache
outside the repo, or FLEETBOT_E2E_NODE / FLEETBOT_E2E_OPENCLAW) runs on loopback against the
e2e suite's fake OpenAI-compatible model; fleetbot's whole stack (store, scheduler, agent API on
a real port) drives `--agents` agents through the gateway protocol. Issues are of two kinds,
alternating: the agent only replies (fleetbot must learn the turn's end from the gateway), or
the agent does what the wake message says — one `exec` tool call running `curl` to finish
through the API — and replies. A share of the agents talk to the gateway through a proxy that
delivers every acknowledgement late (after the runtime's `timeout`), so fleetbot asks again.

    python bench/agent_loop.py [--agents N] [--issues N] [--late-agents N]

Prints, with targets:
- outcome lag: run ended_at − the turn's end as the gateway reports it (agent.wait's
  endedAt), p50/p99 (p99 ≤ 2 s); also shown against the fake model's last byte, which adds
  OpenClaw's own wrap-up after the model answered;
- turns started per run, also for the late-acknowledged agents (exactly 1.00);
- wake message size in tokens (≤ 400): fleetbot's message as the model received it (without
  the timestamp and "Runtime:" lines OpenClaw adds), counted as characters / 3, which
  over-counts English and JWTs alike — no tokenizer ships here;
- LLM turns the agent spends on fleetbot's protocol per issue: model calls whose answer is a
  call to fleetbot's API (≤ 2).
Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.models import IssueStatus, RunStatus  # noqa: E402
from core.runtimes.openclaw.protocol import GatewayConnection  # noqa: E402
from tests.e2e.fake_model import Call, FakeModel, Reply  # noqa: E402
from tests.e2e.gateway import install, running_gateway  # noqa: E402
from tests.e2e.late_ack import LateAckProxy  # noqa: E402
from tests.e2e.test_openclaw_runtime import (  # noqa: E402
    dispatch,
    ended_run,
    finish_from_wake,
    open_fleet,
    openclaw_runtime,
)

LAG_P99 = 2.0
MAX_WAKE_TOKENS = 400
MAX_PROTOCOL_TURNS = 2.0
LATE_BY = 3.0  # seconds the proxy holds each acknowledgement; the runtime's timeout is 2 s


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _our_message(prompt: str) -> str:
    """fleetbot's wake message inside the prompt OpenClaw built around it."""
    start = prompt.find("fleetbot run ")
    text = prompt[start:] if start >= 0 else prompt
    return text.split("\n\nRuntime:", 1)[0]


async def _gateway_end(gw: GatewayConnection, turn: str) -> float | None:
    """When the gateway says the turn ended (epoch seconds)."""
    waited = await gw.request("agent.wait", {"runId": turn, "timeoutMs": 0}, within=10)
    ended = waited.get("endedAt")
    return ended / 1000 if isinstance(ended, int | float) else None


def _protocol_turns(calls: list[Call]) -> int:
    """Model calls whose answer was a call to fleetbot's API."""
    return sum(1 for c in calls if c.answer is not None and "/api/v1/" in repr(c.answer))


async def run(args: argparse.Namespace, gateway_url: str, token: str, model: FakeModel) -> int:
    agents = [f"agent-{n}" for n in range(args.agents)]
    late = set(agents[: args.late_agents])
    async with AsyncExitStack() as stack:
        runtimes = {}
        proxies = []
        port = int(gateway_url.rsplit(":", 1)[1])
        for agent in agents:
            url = gateway_url
            if agent in late:
                proxy = await stack.enter_async_context(LateAckProxy(port, delay=LATE_BY))
                proxies.append(proxy)
                url = proxy.ws_url
            runtimes[agent] = openclaw_runtime(url, timeout="2s")
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-loop-")))
        fleet = await stack.enter_async_context(open_fleet(tmp, runtimes, {"OC_TOKEN": token}))
        work: list[tuple[str, str, str, bool]] = []  # agent, issue, tag, finishes itself
        for n in range(args.issues):
            agent = agents[n % len(agents)]
            finishes = n % 2 == 1
            if finishes:
                tag = model.scenario(finish_from_wake, Reply("Finished through fleetbot's API."))
            else:
                tag = model.scenario(Reply(f"Issue {n} looked into: nothing else to do."))
            issue = await dispatch(fleet, agent, f"Task {n} {tag}", "Do the task, then report.")
            work.append((agent, issue, tag, finishes))
        gw = await stack.enter_async_context(GatewayConnection(gateway_url, token, timeout=10))
        lags: list[float] = []
        model_lags: list[float] = []
        turns: list[int] = []
        late_turns: list[int] = []
        protocol: list[int] = []
        wake_chars: list[int] = []
        problems: list[str] = []
        for agent, issue_id, tag, finishes in work:
            # One issue per agent at a time: later issues of an agent wait for its earlier run.
            run = await ended_run(fleet, agent, issue_id)
            issue = await fleet.service.issue(issue_id)
            calls = model.calls(tag)
            answered = [c for c in calls if c.final_chunk_at is not None]
            want = IssueStatus.DONE if finishes else IssueStatus.IN_REVIEW
            if run.status is not RunStatus.SUCCEEDED or issue.status is not want:
                problems.append(
                    f"{issue_id}: run {run.status.value} ({run.reason}), issue "
                    f"{issue.status.value} (want {want.value})"
                )
            # A finish ends the run before the turn's last reply: only reply-only turns measure
            # how soon fleetbot learns a turn's end.
            if not finishes and answered and run.ended_at is not None and run.external_id:
                ended = await _gateway_end(gw, run.external_id)
                if ended is not None:
                    lags.append(run.ended_at - ended)
                model_lags.append(run.ended_at - max(c.final_chunk_at or 0.0 for c in answered))
            (late_turns if agent in late else turns).append(model.turns(tag))
            protocol.append(_protocol_turns(calls))
            if calls:
                wake_chars.append(len(_our_message(calls[0].prompt)))
    held = sum(p.held for p in proxies)
    all_turns = turns + late_turns
    turns_per_run = statistics.mean(all_turns) if all_turns else 0.0
    late_per_run = statistics.mean(late_turns) if late_turns else 1.0
    wake_tokens = max(wake_chars) / 3 if wake_chars else 0.0
    per_issue = statistics.mean(protocol) if protocol else 0.0
    p50 = _percentile(lags, 50) if lags else float("inf")
    p99 = _percentile(lags, 99) if lags else float("inf")
    print(
        f"agents: {args.agents} ({len(late)} behind a late-acknowledging proxy), "
        f"issues: {len(work)}"
    )
    print(f"late acknowledgements injected: {held}")
    ok = {
        "lag": p99 <= LAG_P99,
        "turns": turns_per_run == 1.0 and late_per_run == 1.0,
        "wake": wake_tokens <= MAX_WAKE_TOKENS,
        "protocol": per_issue <= MAX_PROTOCOL_TURNS,
        "outcomes": not problems,
    }

    def mark(key: str) -> str:
        return "ok" if ok[key] else "MISSED"

    print(
        f"outcome known after the turn's end: p50 {p50:.2f} s, p99 {p99:.2f} s "
        f"(target p99 ≤ {LAG_P99:.0f} s) {mark('lag')}"
    )
    if model_lags:
        print(
            f"  after the model's last byte (OpenClaw's wrap-up included): p50 "
            f"{_percentile(model_lags, 50):.2f} s, p99 {_percentile(model_lags, 99):.2f} s"
        )
    print(
        f"turns started per run: {turns_per_run:.2f}; with late acknowledgements "
        f"{late_per_run:.2f} (target 1.00) {mark('turns')}"
    )
    print(
        f"wake message: ≤ {wake_tokens:.0f} tokens ({max(wake_chars, default=0)} characters, "
        f"as delivered to the model; target ≤ {MAX_WAKE_TOKENS}) {mark('wake')}"
    )
    print(
        f"LLM turns on fleetbot's protocol per issue: {per_issue:.2f} "
        f"(target ≤ {MAX_PROTOCOL_TURNS:.0f}) {mark('protocol')}"
    )
    for line in problems:
        print(f"  {line}")
    print(
        f"runs that ended as expected: {len(work) - len(problems)}/{len(work)} {mark('outcomes')}"
    )
    return 0 if all(ok.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=6)
    parser.add_argument("--issues", type=int, default=18)
    parser.add_argument("--late-agents", type=int, default=2)
    args = parser.parse_args()
    openclaw = install()
    started = time.monotonic()
    with (
        FakeModel() as model,
        tempfile.TemporaryDirectory(prefix="agent-loop-gw-") as home,
        running_gateway(openclaw, Path(home), model) as gateway,
    ):
        print(f"gateway ready in {time.monotonic() - started:.1f} s")
        code = asyncio.run(run(args, gateway.ws_url, gateway.token, model))
    print(f"wall: {time.monotonic() - started:.1f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
