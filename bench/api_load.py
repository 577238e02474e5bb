"""The agent API under load: a hundred agents calling inbox, claim, usage and summaries at once.

The server is the real core (core.fleet.Fleet: store, auth, service, the scheduler sweeping every
second with heartbeats due every 10 s, the monitors every 5 s, the recovery sweep, the alert
flusher, and the API served by uvicorn on loopback) in this process, on the event loop
`fleetbot run` uses. The agents are a separate client process: one keep-alive connection per
agent, each sending its own token. Every agent has a live run (its simulated runtime hangs, so
runs stay open) and an issue to claim.

    python bench/api_load.py [--agents 100] [--rate 12.5] [--seconds 10] [--warmup 2] [--closed]

Open loop (default): each agent sends `--rate` requests a second at random (Poisson) times,
85% inbox, 7.5% usage, 3.75% claim, 3.75% summaries: about 1,060 inbox and 190 writes a second
for 100 agents at the default 12.5. A request's latency counts from when it was due, so a server
falling behind shows in p99 (no coordinated omission). `--closed`: every agent sends its next
request as soon as the answer is in, the same mix; that measures capacity, and its latency is
only concurrency divided by throughput, so the latency target is judged on the open loop.

Prints requests per second and p50/p99 latency per route, every error, and the server's CPU time
per request in the timed window. Targets: inbox ≥ 1,000 requests/s with p99 ≤ 100 ms, and no
errors (any non-2xx answer or failed connection); exit status 1 if one is missed.

CPU split on a 2-core machine: the server process is pinned to CPU 0 and the client to CPU 1
(os.sched_setaffinity), so the load generator never takes the server's core. The client is a
minimal HTTP/1.1 keep-alive client on asyncio streams, not httpx: it costs a fraction of the
server's CPU per request, so one client core can load one server core fully.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _fleet import verdict

from core.auth.keyring import KeyRing
from core.auth.tokens import read_token_file
from core.config import Config, parse_config
from core.fleet import Fleet
from core.models import RunStatus
from fleetbot.cli import event_loop_factory

ROUTES = ("inbox", "claim", "usage", "summaries")
MIX = {"inbox": 0.85, "usage": 0.075, "claim": 0.0375, "summaries": 0.0375}
TARGET_INBOX_RPS = 1000.0
TARGET_INBOX_P99_MS = 100.0
COMPANIES = 10
SERVER_CPU, CLIENT_CPU = 0, 1


def load_config(root: Path, agents: int) -> Config:
    """`agents` simulated agents in COMPANIES companies; every run hangs until its deadline."""
    per = -(-agents // COMPANIES)
    companies = []
    for c in range(COMPANIES):
        ids = [f"c{c}-a{a:03d}" for a in range(per) if c * per + a < agents]
        if ids:
            companies.append(
                {
                    "id": f"co{c}",
                    "name": f"Company {c}",
                    "prefix": f"C{c}",
                    "agents": [
                        {
                            "id": aid,
                            "role": f"r{a}",
                            "runtime": {"kind": "simulated", "latency": 0, "hang_rate": 1},
                        }
                        for a, aid in enumerate(ids)
                    ],
                }
            )
    data = {
        "storage": {"path": str(root / "load.db")},
        "api": {"listen": "127.0.0.1:0"},
        "auth": {"keyring": str(root / "keyring.json"), "token_dir": str(root / "tokens")},
        "defaults": {
            # Due every 10 s, so the scheduler runs heartbeats (of busy agents) during the bench.
            "heartbeat": "10s",
            "run_timeout": "1h",
            "max_turns_per_run": 50,
            "skills": {"*": ["issues.create", "summaries.post"]},
        },
        "monitors": {"interval": "5s"},
        "companies": companies,
    }
    return parse_config(data, "(bench api load fleet)")


def _pin(cpu: int) -> str:
    """Pin this process to `cpu` when the machine has it; says what was done."""
    if not hasattr(os, "sched_setaffinity") or cpu >= (os.cpu_count() or 1):
        return "unpinned"
    os.sched_setaffinity(0, {cpu})
    return f"CPU {cpu}"


# -- the client process --------------------------------------------------------------------


def _request(method: str, path: str, token: str, body: dict[str, Any] | None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    payload = json.dumps(body).encode()
    head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


def _requests_for(agent: dict[str, str]) -> dict[str, bytes]:
    tok, run, issue = agent["token"], agent["run"], agent["issue"]
    return {
        "inbox": _request("GET", "/api/v1/inbox", tok, None),
        # Claiming the issue the run already holds: a full write transaction every time.
        "claim": _request("POST", f"/api/v1/issues/{issue}/claim", tok, {"run_id": run}),
        # Cumulative totals: the same report again is harmless and never reaches the turn cap.
        "usage": _request(
            "POST",
            f"/api/v1/runs/{run}/usage",
            tok,
            {"turns": 1, "input_tokens": 100, "output_tokens": 10, "cost": 0.001},
        ),
        "summaries": _request(
            "POST", "/api/v1/summaries", tok, {"body": "status: working", "run_id": run}
        ),
    }


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return status, await reader.readexactly(length) if length else b""


async def client_main(plan_file: str) -> int:
    """The agents' side: one connection per agent. Prints `window` when the timed phase starts
    and `done` when it ends (the server reads its CPU time then), then one JSON report."""
    with open(plan_file) as fh:  # noqa: ASYNC230 (once, before any traffic)
        plan = json.load(fh)
    where = _pin(CLIENT_CPU)
    host, port, rate, closed = plan["host"], plan["port"], plan["rate"], plan["closed"]
    names, weights = list(MIX), list(MIX.values())
    begin = time.perf_counter()
    start = begin + plan["warmup"]
    end = start + plan["seconds"]
    latencies: dict[str, list[float]] = defaultdict(list)
    answered: dict[str, int] = defaultdict(int)  # answered (2xx) inside the timed window
    errors: dict[str, int] = defaultdict(int)
    samples: dict[str, str] = {}

    async def mark() -> None:
        await asyncio.sleep(start - time.perf_counter())
        print("window", flush=True)
        await asyncio.sleep(end - time.perf_counter())
        print("done", flush=True)

    async def agent_loop(i: int, agent: dict[str, str]) -> None:
        rng = random.Random(i)
        reqs = _requests_for(agent)
        reader, writer = await asyncio.open_connection(host, port)
        due = begin + rng.expovariate(rate)
        try:
            while True:
                now = time.perf_counter()
                if closed:
                    due = now
                elif due > now:
                    await asyncio.sleep(due - now)
                if due >= end:
                    break
                route = rng.choices(names, weights)[0]
                try:
                    status, body = await _exchange(reader, writer, reqs[route])
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    status, body = 0, f"{type(exc).__name__}: {exc}".encode()
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                done = time.perf_counter()
                if 200 <= status < 300 and start <= done < end:
                    answered[route] += 1
                if start <= due:
                    if 200 <= status < 300:
                        latencies[route].append(done - due)
                    else:
                        errors[route] += 1
                        samples.setdefault(route, f"{status} {body[:200].decode(errors='replace')}")
                due += rng.expovariate(rate)
        finally:
            writer.close()

    marker = asyncio.create_task(mark())
    await asyncio.gather(*(agent_loop(i, a) for i, a in enumerate(plan["agents"])))
    await marker
    report = {
        "cpu": where,
        "answered": answered,
        "latencies": latencies,
        "errors": errors,
        "samples": samples,
    }
    print(json.dumps(report), flush=True)
    return 0


# -- the server process --------------------------------------------------------------------


async def _prepare(fleet: Fleet) -> list[dict[str, str]]:
    """One issue per agent; waits until each agent's (hanging) run is open on it."""
    agents = await fleet.service.agents()
    for agent in agents:
        fleet.auth.issue(agent, fsync=False)
        await fleet.service.file_issue(
            title=f"load for {agent.id}", assignee=agent.id, actor="bench"
        )
    plan: list[dict[str, str]] = []
    deadline = time.monotonic() + 30
    for agent in agents:
        while True:
            runs = await fleet.service.recent_runs(agent.id, limit=1)
            if runs and runs[0].status is RunStatus.RUNNING and runs[0].issue_id:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"no live run for {agent.id} after 30 s")
            await asyncio.sleep(0.02)
        token = read_token_file(fleet.config.auth.token_dir, agent.id)
        plan.append({"token": token, "run": runs[0].id, "issue": runs[0].issue_id})
    return plan


async def server_main(args: argparse.Namespace) -> dict[str, Any]:
    where = _pin(SERVER_CPU)
    with tempfile.TemporaryDirectory(prefix="fleetbot-load-") as tmp:
        root = Path(tmp)
        config = load_config(root, args.agents)
        KeyRing.create(config.auth.keyring, time.time())
        async with Fleet(config, {}, serve_api=True, periodic=True, sweep_interval=1.0) as fleet:
            assert fleet.server is not None
            plan = {
                "host": fleet.server.host,
                "port": fleet.server.port,
                "rate": args.rate,
                "closed": args.closed,
                "warmup": args.warmup,
                "seconds": args.seconds,
                "agents": await _prepare(fleet),
            }
            plan_file = root / "plan.json"
            plan_file.write_text(json.dumps(plan))
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--client",
                str(plan_file),
                stdout=subprocess.PIPE,
                limit=1 << 28,  # the report is one long JSON line
            )
            assert proc.stdout is not None
            cpu: dict[str, float] = {}
            last = b""
            while line := await proc.stdout.readline():
                cpu[line.strip().decode(errors="replace")] = time.process_time()
                last = line
            if await proc.wait() != 0:
                raise SystemExit(f"the client process failed (exit {proc.returncode})")
            beats = await fleet.db.scalar("SELECT coalesce(sum(count), 0) FROM heartbeats")
    report: dict[str, Any] = json.loads(last)
    report["server_cpu"] = where
    report["server_cpu_s"] = cpu["done"] - cpu["window"]
    report["heartbeats"] = beats
    return report


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_report(args: argparse.Namespace, report: dict[str, Any]) -> bool:
    """Prints the figures; True if every target is met."""
    seconds = args.seconds
    lat: dict[str, list[float]] = report["latencies"]
    errors: dict[str, int] = report["errors"]
    answered: dict[str, int] = report["answered"]
    total = sum(answered.values())
    load = "closed loop" if args.closed else f"open loop, {args.rate:g} requests/s per agent"
    print(
        f"api load: {args.agents} agents, one connection each, {load}; {args.warmup:g} s "
        f"warm-up + {seconds:g} s timed; server on {report['server_cpu']}, client on "
        f"{report['cpu']}; {loop_name()} event loop"
    )
    print(f"{'route':<10} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for route in ROUTES:
        values = lat.get(route, [])
        print(
            f"{route:<10} {answered.get(route, 0):>9} {answered.get(route, 0) / seconds:>8.0f} "
            f"{_pct(values, 0.50) * 1000:>8.1f} {_pct(values, 0.99) * 1000:>8.1f} "
            f"{errors.get(route, 0):>7}"
        )
    print(f"{'all':<10} {total:>9} {total / seconds:>8.0f}")
    per_request = report["server_cpu_s"] * 1000 / max(1, total)
    print(
        f"server CPU: {report['server_cpu_s'] / seconds * 100:.0f}% of a core, "
        f"{per_request:.3f} ms per request; {report['heartbeats']} heartbeats run in all"
    )
    for route, sample in report["samples"].items():
        print(f"  first {route} error: {sample}")
    inbox = lat.get("inbox", [])
    rps, p99 = answered.get("inbox", 0) / seconds, _pct(inbox, 0.99) * 1000
    n_errors = sum(errors.values())
    ok_rps, ok_err = rps >= TARGET_INBOX_RPS, n_errors == 0
    ok_p99 = args.closed or p99 <= TARGET_INBOX_P99_MS
    p99_note = " (closed loop: not judged)" if args.closed else f" {verdict(ok_p99)}"
    print(
        f"targets: inbox {rps:.0f} req/s ≥ {TARGET_INBOX_RPS:.0f} {verdict(ok_rps)}; "
        f"inbox p99 {p99:.1f} ms ≤ {TARGET_INBOX_P99_MS:.0f}{p99_note}; "
        f"errors {n_errors} = 0 {verdict(ok_err)}"
    )
    return ok_rps and ok_p99 and ok_err


def loop_name() -> str:
    factory = event_loop_factory(os.environ)
    return "asyncio" if factory is None else factory.__module__.split(".")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--rate", type=float, default=12.5, help="requests/s per agent")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--closed", action="store_true", help="closed loop: capacity")
    parser.add_argument("--client", metavar="PLAN", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return asyncio.run(client_main(args.client))
    # The event loop `fleetbot run` uses (uvloop when installed; FLEETBOT_EVENT_LOOP=asyncio
    # for asyncio's own, to compare).
    with asyncio.Runner(loop_factory=event_loop_factory(os.environ)) as runner:
        report = runner.run(server_main(args))
    return 0 if print_report(args, report) else 1


if __name__ == "__main__":
    sys.exit(main())
