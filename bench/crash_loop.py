"""Crash consistency: SIGKILL `fleetbot run` at random moments while agents and the owner keep
working, restart it, and check after every kill and every restart that nothing acknowledged was
lost and nothing finished was redone.

The offline Bot API is served on loopback by this script's own process, so it outlives every
kill: it keeps the chat, the pending updates and the log of every message the bot sent. The
child is a real `fleetbot run -c config.yaml` (simulated agents, the agent API on a free port,
the bot pointed at the offline API by telegram.base_url). While it runs, this script

- files issues, comments on them and moves them along the graph through the agent API;
- finishes the runs of two agents that never finish by themselves (done, failed or blocked);
- is the owner in the team chat: /issue, /pause, /resume, /status, one at a time;

and records every change that was acknowledged (a 2xx answer, or the bot's confirmation). Some
agents fail on purpose, one has a broken token and one company has no work, so alerts fire,
change and resolve throughout. Each kill lands at a random moment: usually while everything
is busy, sometimes during startup.

Invariants (read from the SQLite file directly, read-only, and from the chat):
1. every acknowledged issue, comment, status change, run finish, /pause and /resume is there;
2. after a restart no run of an earlier process is left `running`;
3. an issue seen done or cancelled stays so and is never dispatched again;
4. every alert message due is delivered, and none twice (per alert and chat, never more
   sendMessage calls than the outbox rows that allow one); a row whose send the kill
   interrupted is `in_doubt` by design and is counted on its own;
5. a bot command is applied once: no /issue files two issues, no command is answered twice.

Prints the counts; exit status 1 on any violation.

    python bench/crash_loop.py [--kills 20] [--seed 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import re
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from fleetbot.cli import cmd_init
from offline_botapi.server import OfflineBotAPI

OWNER = 1001
GROUP = -4001  # the aliens team chat, where the owner types commands
WORKERS = ("w1", "w2")  # simulated agents that finish their own runs
HANGERS = ("h1", "h2")  # never finish by themselves: this script finishes their runs
FLAKY = "flaky"  # fails half its runs: agent_error alerts, auto-reset, resolutions
ASSIGNEES = (*WORKERS, *HANGERS, FLAKY)
BOT_TOKEN = "7430012345:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-x7"  # shaped like a real one
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_ALERT_HEAD = re.compile(r"^\S+ <b>#(\d+) ")
_FILED = re.compile(r"Filed ([A-Z]+-\d+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sim(**knobs: Any) -> dict[str, Any]:
    return {"kind": "simulated", "latency": "0.3s", **knobs}


def fleet_config(api_port: int, base_url: str) -> dict[str, Any]:
    return {
        # Run summaries wait for the digest: one per run would be several a second, far past
        # Telegram's 20 messages a minute per group. Agents post summaries through the API.
        "telegram": {"base_url": base_url, "owners": [OWNER], "run_summaries": "digest"},
        "storage": {"path": "fleet.db"},
        "api": {"listen": f"127.0.0.1:{api_port}"},
        "defaults": {
            "heartbeat": "3s",
            "run_timeout": "10s",
            "max_attempts": 3,
            "retry_backoff": "1s",
            "skills": {"*": ["summaries.post"], "ceo": ["issues.create", "summaries.post"]},
        },
        "monitors": {
            "interval": "1s",
            "stuck_after": "6s",
            "silent_after": "5s",
            "queue_empty_heartbeats": 2,
        },
        # No reminders within a run of this script: every alert message is a first one.
        "alerts": {
            "group_wait": "1s",
            "repeat_interval": "12h",
            "auto_reset_after": "2s",
            "auto_reset_max": "8s",
        },
        "companies": [
            {
                "id": "aliens",
                "name": "Aliens",
                "prefix": "ALI",
                "chat": GROUP,
                "agents": [
                    {"id": "boss", "role": "ceo", "runtime": _sim()},
                    *({"id": w, "role": "dev", "runtime": _sim()} for w in WORKERS),
                    *({"id": h, "role": "ops", "runtime": _sim(hang_rate=1.0)} for h in HANGERS),
                    {"id": FLAKY, "role": "qa", "runtime": _sim(failure_rate=0.5, seed=3)},
                    {"id": "ash", "role": "qa", "runtime": _sim()},  # its token is broken
                ],
            },
            {
                "id": "matrix",
                "name": "Matrix",
                "prefix": "MAT",
                "agents": [{"id": "neo", "role": "ceo", "runtime": _sim()}],  # never has work
            },
        ],
    }


@dataclass
class Ledger:
    """Everything the fleet acknowledged, and what this script saw of it."""

    issues: dict[str, str] = field(default_factory=dict)  # issue id -> title
    bot_titles: dict[str, str] = field(default_factory=dict)  # title -> issue id (/issue)
    comments: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (issue, body)
    summaries: dict[int, str] = field(default_factory=dict)  # id -> body
    moves: list[tuple[str, str]] = field(default_factory=list)  # (issue, new status)
    finishes: dict[str, str] = field(default_factory=dict)  # run id -> outcome
    commands: Counter[str] = field(default_factory=Counter)  # "/pause flaky" -> confirmed
    terminal_seen: dict[str, tuple[str, float]] = field(default_factory=dict)  # status, since
    unanswered: int = 0
    refused: Counter[int] = field(default_factory=Counter)  # API answers by status code
    command_messages: list[int] = field(default_factory=list)  # the owner's command messages


@dataclass
class Report:
    kills: int = 0
    startup_kills: int = 0
    restarts: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        yield (
            f"kills: {self.kills} ({self.startup_kills} during startup), restarts: "
            f"{self.restarts}, wall: {self.seconds:.0f} s"
        )
        for key, value in self.counts.items():
            yield f"  {key}: {value}"
        yield f"violations: {len(self.violations)}"
        for v in self.violations[:40]:
            yield f"  - {v}"


class Child:
    """One `fleetbot run` process at a time, its output appended to one log per process."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.spawned_at = 0.0
        self.generation = 0

    async def start(self) -> None:
        self.generation += 1
        log = (self.folder / f"run-{self.generation:02d}.log").open("wb")
        try:
            self.spawned_at = time.time()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fleetbot.cli",
                "run",
                "-c",
                str(self.folder / "config.yaml"),
                stdout=log,
                stderr=log,
                env=self.env,
            )
        finally:
            log.close()

    async def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        code = await self.proc.wait()
        self.proc = None
        return code

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class CrashLoop:
    def __init__(self, folder: Path, seed: int, uptime: tuple[float, float]) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        self.uptime = uptime
        self.api = OfflineBotAPI(BOT_TOKEN)
        self.api.add_user(OWNER, "Owner")
        self.api.add_group(GROUP, "Aliens team", members=[OWNER])
        self.ledger = Ledger()
        self.report = Report()
        self.api_port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.tokens: dict[str, str] = {}
        self._db: sqlite3.Connection | None = None
        self._stop = asyncio.Event()
        self._counter = 0

    # -- setup ----------------------------------------------------------------------------------

    async def prepare(self, base_url: str) -> Child:
        cfg = self.folder / "config.yaml"
        cfg.write_text(yaml.safe_dump(fleet_config(self.api_port, base_url)))
        env = {
            **os.environ,
            "FLEETBOT_TELEGRAM_TOKEN": self.api.token,
            "FLEETBOT_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("FLEETBOT_CONFIG", None)
        # `fleetbot init DIR` (it keeps our config.yaml): the key ring and a token per agent.
        # Its own function in a thread (it runs its own event loop) spares a Python start.
        with contextlib.redirect_stdout(io.StringIO()):
            if await asyncio.to_thread(cmd_init, self.folder, force=False, env=env) != 0:
                raise SystemExit("fleetbot init failed: not every agent's token verifies")
        token_dir = self.folder / "secrets" / "tokens"
        for path in token_dir.glob("*.jwt"):
            self.tokens[path.stem] = path.read_text().strip()
        (token_dir / "ash.jwt").write_text("not-a-token\n")  # ash: agent_unauthenticated
        return Child(self.folder, env)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            uri = f"file:{self.folder / 'fleet.db'}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)
        return self._db

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return list(self.db.execute(sql, args).fetchall())

    def _next(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}-{self._counter}"

    # -- the load -------------------------------------------------------------------------------

    async def _api(
        self, client: httpx.AsyncClient, method: str, path: str, agent: str, body: Any
    ) -> dict[str, Any] | None:
        """One API call; the answer if it was a 2xx, else None (refused or the process died)."""
        try:
            r = await client.request(
                method,
                self.api_url + path,
                json=body,
                headers={"Authorization": f"Bearer {self.tokens[agent]}"},
            )
        except httpx.HTTPError:
            await asyncio.sleep(0.05)
            return None
        if r.status_code >= 500:
            self.ledger.refused[r.status_code] += 1
            return None
        if r.status_code >= 300:
            self.ledger.refused[r.status_code] += 1
            return None
        answer: dict[str, Any] = r.json()
        return answer

    async def _file_issues(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            title = self._next("api")
            body = {"title": title, "assignee": self.rng.choice(ASSIGNEES)}
            got = await self._api(client, "POST", "/api/v1/issues", "boss", body)
            if got is not None:
                self.ledger.issues[got["id"]] = title
            await asyncio.sleep(self.rng.uniform(0.1, 0.3))

    async def _comment(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(self.rng.uniform(0.1, 0.3))
            if not self.ledger.issues:
                continue
            issue = self.rng.choice(list(self.ledger.issues))
            text = self._next("note")
            path = f"/api/v1/issues/{issue}/comments"
            got = await self._api(client, "POST", path, "boss", {"body": text})
            if got is not None:
                self.ledger.comments[int(got["id"])] = (issue, text)

    async def _post_summaries(self, client: httpx.AsyncClient) -> None:
        """Relayed to the team chat; ~12 a minute keeps under the group's limit of 20."""
        while not self._stop.is_set():
            await asyncio.sleep(self.rng.uniform(3, 7))
            text = self._next("summary")
            agent = self.rng.choice(WORKERS)
            got = await self._api(client, "POST", "/api/v1/summaries", agent, {"body": text})
            if got is not None:
                self.ledger.summaries[int(got["id"])] = text

    async def _move(self, client: httpx.AsyncClient) -> None:
        targets = ["cancelled", "cancelled", "done", "in_review", "blocked", "todo"]
        while not self._stop.is_set():
            await asyncio.sleep(self.rng.uniform(0.15, 0.4))
            if not self.ledger.issues:
                continue
            issue = self.rng.choice(list(self.ledger.issues))
            status = self.rng.choice(targets)
            body = {"status": status, "reason": "crash loop"}
            got = await self._api(client, "PATCH", f"/api/v1/issues/{issue}", "boss", body)
            if got is not None:
                self.ledger.moves.append((issue, status))

    async def _finish_runs(self, client: httpx.AsyncClient) -> None:
        """The hanging agents' runs, finished through the API like a real agent would; also
        notes which issues are done or cancelled, and since when, for invariant 3."""
        marks = ",".join("?" for _ in HANGERS)
        while not self._stop.is_set():
            await asyncio.sleep(self.rng.uniform(0.1, 0.3))
            seen_at = time.time()  # before the read: the issue was terminal by then
            with contextlib.suppress(sqlite3.Error):
                for issue, status in self.query(
                    "SELECT id, status FROM issues WHERE status IN ('done', 'cancelled')"
                ):
                    self.ledger.terminal_seen.setdefault(issue, (status, seen_at))
                live = self.query(
                    f"SELECT id, agent_id FROM runs WHERE status = 'running' AND agent_id IN "
                    f"({marks})",
                    HANGERS,
                )
                for run_id, agent in live:
                    outcome = self.rng.choice(["done", "done", "failed", "blocked"])
                    summary = f"finished by the crash loop: {outcome} (run {run_id[:8]})"
                    body = {"outcome": outcome, "summary": summary}
                    path = f"/api/v1/runs/{run_id}/finish"
                    if await self._api(client, "POST", path, agent, body) is not None:
                        self.ledger.finishes[run_id] = outcome

    async def _owner(self) -> None:
        """The owner in the team chat: one command at a time, waiting for the answer."""
        while not self._stop.is_set():
            roll = self.rng.random()
            if roll < 0.5:
                title = self._next("bot")
                command = f"/issue {self.rng.choice(WORKERS)} {title}"
            elif roll < 0.7:
                command = f"/pause {FLAKY} crash loop"
            elif roll < 0.9:
                command = f"/resume {FLAKY}"
            else:
                command = "/status"
            sent = await self.api.send_text(OWNER, command, chat_id=GROUP)
            self.ledger.command_messages.append(sent["message_id"])

            def answers(m: dict[str, Any], mid: int = sent["message_id"]) -> bool:
                return m.get("reply_to_message", {}).get("message_id") == mid

            try:
                reply = await self.api.wait_for_message(GROUP, answers, timeout=8)
            except TimeoutError:
                self.ledger.unanswered += 1  # lost with a killed process: never confirmed
                continue
            text = reply.get("text", "")
            if command.startswith("/issue") and (found := _FILED.search(text)):
                self.ledger.issues[found.group(1)] = title
                self.ledger.bot_titles[title] = found.group(1)
            elif command.startswith("/pause") and " is paused" in text:
                self.ledger.commands[f"agent.pause {FLAKY}"] += 1
            elif command.startswith("/resume") and " is back on its heartbeat" in text:
                self.ledger.commands[f"agent.resume {FLAKY}"] += 1
            await asyncio.sleep(self.rng.uniform(0.05, 0.2))

    # -- the checks -----------------------------------------------------------------------------

    def violate(self, what: str) -> None:
        self.report.violations.append(what)

    def check_acknowledged(self) -> None:
        """Invariant 1, read from the file while no process is running."""
        led = self.ledger
        titles = dict(self.query("SELECT id, title FROM issues"))
        for issue, title in list(led.issues.items()):
            if titles.get(issue) != title:
                self.violate(f"acknowledged issue {issue} ({title}) is missing")
        comments = {
            r[0]: (r[1], r[2]) for r in self.query("SELECT id, issue_id, body FROM comments")
        }
        for cid, want in list(led.comments.items()):
            if comments.get(cid) != want:
                self.violate(f"acknowledged comment {cid} on {want[0]} is missing")
        bodies = dict(self.query("SELECT id, body FROM summaries"))
        for sid, text in list(led.summaries.items()):
            if bodies.get(sid) != text:
                self.violate(f"acknowledged summary {sid} is missing")
        moved = Counter(
            (target, json.loads(detail).get("to"))
            for target, detail in self.query(
                "SELECT target, detail FROM audit WHERE action = 'issue.move' AND actor = ?",
                ("agent:boss",),
            )
        )
        for (issue, status), n in Counter(led.moves).items():
            if moved[(issue, status)] < n:
                self.violate(f"acknowledged move of {issue} to {status} is missing")
        statuses = dict(self.query("SELECT id, status FROM issues"))
        for issue, status in led.moves:
            if status in ("done", "cancelled") and statuses.get(issue) != status:
                self.violate(f"{issue} was acknowledged {status} but is {statuses.get(issue)}")
        ended = {r[0]: (r[1], r[2]) for r in self.query("SELECT id, status, reason_code FROM runs")}
        want_end = {
            "done": ("succeeded", "done"),
            "blocked": ("succeeded", "blocked"),
            "failed": ("failed", "agent_failed"),
        }
        for run_id, outcome in list(led.finishes.items()):
            if ended.get(run_id) != want_end[outcome]:
                self.violate(f"acknowledged finish of run {run_id[:8]} ({outcome}) is missing")
        audited = Counter(
            f"{a} {t}"
            for a, t in self.query(
                "SELECT action, target FROM audit WHERE actor = ? AND action IN "
                "('agent.pause', 'agent.resume') AND result = 'ok'",
                (f"tg:{OWNER}",),
            )
        )
        for key, n in led.commands.items():
            if audited[key] < n:
                self.violate(f"{n} confirmed {key} but {audited[key]} in the store")

    async def check_no_stale_runs(self, before: float) -> None:
        """Invariant 2: runs started before this process was spawned are no longer running."""
        async with asyncio.timeout(10):
            while True:
                stale = self.query(
                    "SELECT count(*) FROM runs WHERE status = 'running' AND started_at < ?",
                    (before,),
                )[0][0]
                if not stale:
                    return
                await asyncio.sleep(0.05)

    def check_terminal(self) -> None:
        """Invariant 3: done and cancelled stay so, and their issues are not dispatched again."""
        statuses = dict(self.query("SELECT id, status FROM issues"))
        runs = self.query("SELECT issue_id, started_at, id FROM runs WHERE issue_id IS NOT NULL")
        for issue, (status, _) in self.ledger.terminal_seen.items():
            if statuses.get(issue) != status:
                self.violate(f"{issue} was seen {status} and is now {statuses.get(issue)}")
        for issue, started, run_id in runs:
            seen = self.ledger.terminal_seen.get(issue)
            if seen is not None and started > seen[1]:
                self.violate(f"{issue} ({seen[0]}) was dispatched again: run {run_id[:8]}")

    def alert_sends(self) -> Counter[tuple[str, int]]:
        sends: Counter[tuple[str, int]] = Counter()
        for call in self.api.calls("sendMessage"):
            found = _ALERT_HEAD.match(str(call.params.get("text", "")))
            if found and "reply_parameters" not in call.params:
                sends[(str(call.params["chat_id"]), int(found.group(1)))] += 1
        return sends

    def check_alerts(self, final: bool) -> dict[str, int]:
        """Invariant 4: per alert and chat, sendMessage calls between the rows sent for sure
        and those plus the ones in doubt; at the end, nothing due left undelivered."""
        rows: dict[tuple[str, int], Counter[str]] = {}
        for chat, alert_id, state in self.query(
            "SELECT chat, alert_id, state FROM outbox WHERE kind = 'alert'"
        ):
            rows.setdefault((chat, alert_id), Counter())[state] += 1
        sends = self.alert_sends()
        doubt = arrived = 0
        for key in set(rows) | set(sends):
            states = rows.get(key, Counter())
            sure = states["sent"]
            maybe = states["in_doubt"] + states["sending"]
            doubt += maybe
            arrived += max(0, min(maybe, sends[key] - sure))
            if sends[key] > sure + maybe:
                self.violate(f"alert #{key[1]} sent {sends[key]} times to {key[0]}")
            elif sends[key] < sure:
                self.violate(f"alert #{key[1]} marked sent to {key[0]} but never arrived")
        if final:
            for alert_id, kind in self.query(
                "SELECT id, kind FROM alerts WHERE state = 'firing' AND notified_version = 0 "
                "AND created_at < ?",
                (time.time() - 5,),
            ):
                self.violate(f"alert #{alert_id} ({kind}) was due but never put in the outbox")
            late = self.query(
                "SELECT id, kind, chat, error FROM outbox WHERE state = 'pending' AND due_at < ?",
                (time.time() - 5,),
            )
            for row_id, kind, chat, error in late:
                self.violate(f"outbox row {row_id} ({kind} to {chat}) still pending: {error}")
            for row_id, kind, error in self.query(
                "SELECT id, kind, error FROM outbox WHERE state = 'dead'"
            ):
                self.violate(f"outbox row {row_id} ({kind}) dropped: {error}")
        s_doubt, s_arrived = self.check_summaries()
        return {
            "alert messages": sum(sends.values()),
            "alert messages in doubt": doubt,
            "  in doubt, arrived": arrived,
            "summary messages in doubt": s_doubt,
            "  in doubt, arrived ": s_arrived,
        }

    def check_summaries(self) -> tuple[int, int]:
        """Summaries relayed to the team chat: never twice; returns (in doubt, arrived)."""
        texts = Counter(
            str(c.params.get("text", ""))
            for c in self.api.calls("sendMessage")
            if str(c.params.get("chat_id")) == str(GROUP) and "reply_parameters" not in c.params
        )
        doubt = arrived = 0
        for body, issue, state in self.query(
            "SELECT s.body, s.issue_id, o.state FROM outbox o JOIN summaries s "
            "ON s.id = json_extract(o.payload, '$.summary_id') WHERE o.kind = 'summary'"
        ):
            tail = f"· {issue}: {body}" if issue else f": {body}"
            n = sum(k for t, k in texts.items() if t.endswith(tail))
            if state in ("in_doubt", "sending"):
                doubt += 1
                arrived += n > 0
            if n > 1:
                self.violate(f"summary {tail!r} sent {n} times")
        return doubt, arrived

    def check_commands_once(self) -> None:
        """Invariant 5: no /issue filed twice, no command answered twice."""
        titles = Counter(t for (t,) in self.query("SELECT title FROM issues"))
        for title, issue in self.ledger.bot_titles.items():
            if titles[title] > 1:
                self.violate(f"/issue {title} filed {titles[title]} issues (first {issue})")
        answers = Counter(
            m.get("reply_to_message", {}).get("message_id") for m in self.api.messages(GROUP)
        )
        for mid in self.ledger.command_messages:
            if answers[mid] > 1:
                self.violate(f"command message {mid} was answered {answers[mid]} times")

    # -- the loop -------------------------------------------------------------------------------

    async def wait_healthy(self, child: Child, limit: float = 20) -> None:
        async with httpx.AsyncClient(timeout=1) as client, asyncio.timeout(limit):
            while True:
                if not child.alive:
                    raise RuntimeError(f"fleetbot run exited; see {self.folder}/run-*.log")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.api_url + "/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.03)

    async def run(self, kills: int) -> Report:
        started = time.monotonic()
        async with self.api.serve() as base_url:
            child = await self.prepare(base_url)
            async with httpx.AsyncClient(timeout=5) as client:
                load = [
                    asyncio.create_task(self._file_issues(client)),
                    asyncio.create_task(self._comment(client)),
                    asyncio.create_task(self._post_summaries(client)),
                    asyncio.create_task(self._move(client)),
                    asyncio.create_task(self._finish_runs(client)),
                    asyncio.create_task(self._owner()),
                ]
                try:
                    await self._kill_loop(child, kills)
                finally:
                    self._stop.set()
                    for task in load:
                        task.cancel()
                    await asyncio.gather(*load, return_exceptions=True)
                    if child.alive:
                        await child.kill()
            self._summarise()
        if self._db is not None:
            self._db.close()
            self._db = None
        self.report.seconds = time.monotonic() - started
        return self.report

    async def _kill_loop(self, child: Child, kills: int) -> None:
        for k in range(kills + 1):
            await child.start()
            spawned = child.spawned_at
            during_startup = k < kills and self.rng.random() < 0.2
            if during_startup:
                # Somewhere in startup: migrations, the token self-test, interrupting old
                # runs, the bot's first calls. It may also be up already.
                await asyncio.sleep(self.rng.uniform(0.0, 0.8))
            else:
                await self.wait_healthy(child)
                if k:
                    self.report.restarts += 1
                try:
                    await self.check_no_stale_runs(spawned)
                except TimeoutError:
                    self.violate(f"restart {k}: runs of an earlier process still running")
                await asyncio.sleep(self.rng.uniform(*self.uptime))
                if k == kills:
                    break  # the last process is not killed: it drains and stops cleanly
            await child.kill()
            self.report.kills += 1
            self.report.startup_kills += during_startup
            self.check_acknowledged()
            self.check_terminal()
            self.check_alerts(final=False)
        await self._settle(child)

    async def _settle(self, child: Child) -> None:
        """No more kills: stop the load, let every due alert go out, stop cleanly."""
        self._stop.set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            now = time.time()
            due = self.query(
                "SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending') AND due_at < ?",
                (now,),
            )[0][0]
            held = self.query(
                "SELECT count(*) FROM alerts WHERE state = 'firing' AND notified_version = 0 "
                "AND created_at < ?",
                (now - 2,),
            )[0][0]
            if not due and not held:
                break
        code = await child.kill(signal.SIGTERM)
        if code != 0:
            self.violate(f"fleetbot run exited with {code} on SIGTERM")
        self.check_acknowledged()
        self.check_terminal()
        self.check_commands_once()

    def _summarise(self) -> None:
        led = self.ledger
        runs = Counter(s for (s,) in self.query("SELECT status FROM runs"))
        alerts = self.query("SELECT count(*), sum(state = 'resolved') FROM alerts")[0]
        figures = self.check_alerts(final=True)
        logs = [p.read_text(errors="replace") for p in sorted(self.folder.glob("run-*.log"))]
        tracebacks = sum(text.count("Traceback") for text in logs)
        secrets = {BOT_TOKEN, *self.tokens.values()}
        leaks = sum(bool(_JWT.search(t)) or any(x in t for x in secrets) for t in logs)
        outbox = Counter(s for (s,) in self.query("SELECT state FROM outbox"))
        self.report.counts = {
            "issues acknowledged": len(led.issues),
            "  of them by /issue": len(led.bot_titles),
            "comments acknowledged": len(led.comments),
            "summaries acknowledged": len(led.summaries),
            "status changes acknowledged": len(led.moves),
            "run finishes acknowledged": len(led.finishes),
            "/pause and /resume confirmed": sum(led.commands.values()),
            "bot commands unanswered (lost with a kill)": led.unanswered,
            "API calls refused (4xx)": sum(n for c, n in led.refused.items() if c < 500),
            "API calls failed (5xx)": sum(n for c, n in led.refused.items() if c >= 500),
            "issues done or cancelled (watched)": len(led.terminal_seen),
            "runs": sum(runs.values()),
            "  interrupted by a kill": runs["interrupted"],
            "alerts": int(alerts[0]),
            "  resolved": int(alerts[1] or 0),
            **figures,
            "outbox rows": sum(outbox.values()),
            **{f"  {state}": n for state, n in sorted(outbox.items())},
            "tracebacks in the logs": tracebacks,
            "logs with a token in them": leaks,
        }
        for code, n in led.refused.items():
            if code >= 500:
                self.violate(f"the API answered {code} {n} times")
        for text in logs:
            for what in _tracebacks(text):
                self.violate(f"a traceback in a run log: {what}")
        if leaks:
            self.violate(f"{leaks} of {self.folder}/run-*.log hold a token")


def _tracebacks(log: str) -> list[str]:
    """Each traceback in a log as the log line before it and the exception it ended in."""
    lines = log.splitlines()
    found = []
    for k, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = next((x for x in lines[k + 1 :] if x and not x[0].isspace()), "?")
            found.append(f"{lines[k - 1][:160] if k else ''} -> {end[:200]}")
    return found


async def crash_loop(
    kills: int = 20,
    seed: int = 1,
    uptime: tuple[float, float] = (1.0, 5.0),
    folder: Path | None = None,
) -> Report:
    """Run the loop in `folder` (a temporary one if None) and return its report."""
    if folder is not None:
        return await CrashLoop(folder, seed, uptime).run(kills)
    with tempfile.TemporaryDirectory(prefix="fleetbot-crash-") as tmp:
        return await CrashLoop(Path(tmp), seed, uptime).run(kills)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs (default 20)")
    p.add_argument("--seed", type=int, default=1, help="seed for every random choice")
    p.add_argument("--min-up", type=float, default=1.0, help="shortest uptime before a kill")
    p.add_argument("--max-up", type=float, default=5.0, help="longest uptime before a kill")
    p.add_argument("--keep", metavar="DIR", help="keep the data and logs in DIR")
    args = p.parse_args(argv)
    folder = Path(args.keep).resolve() if args.keep else None
    report = asyncio.run(crash_loop(args.kills, args.seed, (args.min_up, args.max_up), folder))
    print("\n".join(report.lines()))
    return 1 if report.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
