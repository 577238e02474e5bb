"""Rotating every key and token while agents keep calling the API with their previous tokens.

For the design's 12-agent fleet and a 10,000-agent fleet (100 companies × 100 agents), starts a
real Fleet (store, key ring, API served by uvicorn on loopback), reads the agents' current token
files, and keeps four concurrent clients calling `GET /api/v1/me` and `/api/v1/inbox` with those
previous tokens while `rotate_all` makes a new key, re-issues every token file and verifies each
one. Prints the rotation time, the requests made during it and how many failed, and the worst
API latency (a long event-loop stall would show here).

    python bench/rotation.py

Targets: rotate + verify ≤ 1 s for 12 agents and ≤ 10 s for 10,000; 0 failed requests; every
agent authenticated afterwards. Exit status 1 if any is missed.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from _fleet import design_config, generated_config, verdict

from core.auth.keyring import KeyRing
from core.auth.rotation import rotate_all
from core.config import ApiConfig, Config
from core.fleet import Fleet

TARGETS_S = {12: 1.0, 10_000: 10.0}
CLIENTS = 4
SAMPLE = 500  # previous tokens the clients cycle through (all of them for the small fleet)


async def client_main(url: str, tokens_file: str) -> int:
    """The agents' side, in a process of its own (as real agents are): CLIENTS connections
    calling the API with the previous tokens until stdin closes; prints one JSON report."""
    with open(tokens_file) as fh:  # noqa: ASYNC230 (once, before any traffic)
        tokens = json.load(fh)
    calls: list[tuple[float, float, int, str]] = []  # start, end (epoch s), status, detail
    stop = asyncio.Event()

    async def one(seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            while not stop.is_set():
                path = rng.choice(("/api/v1/me", "/api/v1/inbox"))
                headers = {"Authorization": f"Bearer {rng.choice(tokens)}"}
                begin = time.time()
                try:
                    r = await http.get(path, headers=headers)
                except httpx.HTTPError as exc:
                    calls.append((begin, time.time(), 0, f"{path}: {type(exc).__name__}"))
                    continue
                detail = "" if r.status_code == 200 else f"{path}: {r.text[:80]}"
                calls.append((begin, time.time(), r.status_code, detail))

    workers = [asyncio.create_task(one(seed)) for seed in range(CLIENTS)]
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # until the bench closes our stdin
    stop.set()
    await asyncio.gather(*workers)
    print(json.dumps(calls))
    return 0


@dataclass
class Traffic:
    calls: list[tuple[float, float, int, str]]

    def between(self, start: float, end: float) -> list[tuple[float, float, int, str]]:
        return [c for c in self.calls if c[1] >= start and c[0] <= end]

    @property
    def failed(self) -> list[str]:
        return [f"{c[2]} {c[3]}" for c in self.calls if c[2] != 200]


async def start_client(url: str, tokens: list[str], root: Path) -> asyncio.subprocess.Process:
    tokens_file = root / "previous-tokens.json"
    tokens_file.write_text(json.dumps(tokens))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client",
        url,
        str(tokens_file),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await proc.stdout.readline()
    if line.strip() != b"ready":
        raise RuntimeError(f"the client did not start: {line!r}")
    return proc


async def stop_client(proc: asyncio.subprocess.Process) -> Traffic:
    out, _ = await proc.communicate(b"")
    return Traffic([tuple(c) for c in json.loads(out)])  # type: ignore[misc]


def _config(root: Path, agents: int) -> Config:
    if agents == 12:
        config = design_config(root, failure_rate=0.0, seed=1)
    else:
        config = generated_config(root, companies=agents // 100, agents_per_company=100)
    return config.model_copy(update={"api": ApiConfig(listen="127.0.0.1:0")})


async def measure(agents: int) -> bool:
    with tempfile.TemporaryDirectory(prefix="fleetbot-rotation-") as tmp:
        config = _config(Path(tmp), agents)
        KeyRing.create(config.auth.keyring, time.time())
        started = time.perf_counter()
        async with Fleet(config, {}, periodic=False) as fleet:
            startup = time.perf_counter() - started
            ids = [a.id for a in await fleet.service.agents()]
            assert len(ids) == agents, f"expected {agents} agents, found {len(ids)}"
            sample = ids if len(ids) <= SAMPLE else random.Random(7).sample(ids, SAMPLE)
            previous = [fleet.auth.token_file(a).read_text().strip() for a in sample]
            client = await start_client(fleet.api_url, previous, Path(tmp))
            try:
                await asyncio.sleep(0.3)  # traffic flowing before the rotation starts
                begin, t0 = time.time(), time.perf_counter()
                report = await rotate_all(fleet.auth, fleet.service, "bench")
                elapsed, end = time.perf_counter() - t0, time.time()
                await asyncio.sleep(0.3)  # and after it, still with the previous tokens
            finally:
                traffic = await stop_client(client)
    target = TARGETS_S[agents]
    during = traffic.between(begin, end)
    lat = sorted(c[1] - c[0] for c in during) or [0.0]
    failed = traffic.failed
    passed = elapsed <= target and not failed and report.ok and len(during) > 0
    print(
        f"{agents:>6} agents: rotate + verify {elapsed:6.3f} s (target ≤ {target:g} s) "
        f"{verdict(elapsed <= target)}; {report.summary()}"
    )
    print(
        f"        API with previous tokens: {len(traffic.calls)} requests, {len(during)} during "
        f"the rotation; failed {len(failed)} {verdict(not failed)}; latency during it: median "
        f"{statistics.median(lat) * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms "
        f"(fleet startup {startup:.2f} s)"
    )
    for line in failed[:5]:
        print(f"        failed: {line}")
    if not report.ok:
        print("\n".join(report.lines(limit=10)))
    return passed


async def main() -> int:
    results = [await measure(n) for n in TARGETS_S]
    return 0 if all(results) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        sys.exit(asyncio.run(client_main(sys.argv[2], sys.argv[3])))
    sys.exit(asyncio.run(main()))
