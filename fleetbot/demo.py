"""`fleetbot demo`: the whole thing offline, with nothing to configure.

The real core, agent API and bot run against the offline Bot API, with the simulated two-company
fleet of the field notes. Some agents misbehave on purpose so every kind of alert shows up within
the first few minutes: Bishop fails or gets blocked now and then, Dallas always fails (his issue
is retried, then blocked), Kane hangs (silent, stuck, timed out), Lambert's endpoint is down
(runtime unreachable), Ash's token was signed with the wrong key (unauthenticated), Ripley has a
tiny budget, and Matrix has no work at all (empty queue). You are the owner, chatting in the
terminal.
"""

from __future__ import annotations

import logging
import socket
import tempfile
from pathlib import Path
from typing import Any, TextIO

from bot import logs
from bot.runner import BotRunner
from core import (
    Config,
    Fleet,
    KeyRing,
    SystemClock,
    TokenAuthority,
    parse_config,
    resolve_paths,
    write_token_file,
)
from fleetbot.terminal_chat import TerminalChat, stdin_lines
from offline_botapi.server import OfflineBotAPI

log = logging.getLogger(__name__)

OWNER_ID = 1001
ALIENS_CHAT = -1001000000101
MATRIX_CHAT = -1001000000102

# Every command here must work as written in the demo fleet (tests/fleetbot/test_demo.py): both
# companies have a cto, so a role needs its @company.
INTRO = """\
fleetbot demo — you are the owner. The fleet below is simulated; the bot, the core and the API
are real. Alerts arrive on their own within a few minutes. Try:
  /status   /agents   /agent bishop   /issues   /alerts
  /issue cto@aliens Fix the login page   /issue (guided)   /authcheck   /rotate all
  /routines   /backlog   /issue ash !backlog Write the docs   /costs ripley
  /costs   /digest   /help
Type a number to press that button. quit (or Ctrl-D) leaves.
"""


def _sim(**knobs: Any) -> dict[str, Any]:
    return {"kind": "simulated", "latency": "1s", **knobs}


def _closed_port() -> int:
    """A loopback port nothing listens on, for the agent whose endpoint is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_config() -> dict[str, Any]:
    down = f"http://127.0.0.1:{_closed_port()}/run"
    return {
        "telegram": {"owners": [OWNER_ID], "run_summaries": "chat"},
        "storage": {"path": "demo.db"},
        "api": {"listen": "127.0.0.1:0"},
        "auth": {"rotation_grace": "10m"},
        "defaults": {
            "heartbeat": "30s",
            "run_timeout": "60s",
            "retry_backoff": "5s",
            "max_attempts": 3,
            "skills": {"*": ["issues.create", "summaries.post"]},
        },
        "monitors": {
            "interval": "5s",
            "stuck_after": "35s",
            "silent_after": "20s",
            "queue_empty_heartbeats": 2,
            "recovery_loop_dispatches": 2,
            "recovery_loop_window": "10m",
        },
        "alerts": {
            "group_wait": "3s",
            "repeat_interval": "10m",
            "auto_reset_after": "15s",
            "auto_reset_max": "1m",
        },
        "companies": [
            {
                "id": "aliens",
                "name": "Aliens",
                "prefix": "ALI",
                "chat": ALIENS_CHAT,
                "agents": [
                    {
                        "id": "ripley",
                        "name": "Ripley",
                        "role": "ceo",
                        "runtime": _sim(),
                        "monthly_budget": 0.02,
                    },
                    {
                        "id": "bishop",
                        "name": "Bishop",
                        "role": "cto",
                        "reports_to": "ripley",
                        "runtime": _sim(failure_rate=0.3, blocked_rate=0.3, seed=7),
                    },
                    {
                        "id": "dallas",
                        "name": "Dallas",
                        "role": "cpo",
                        "reports_to": "ripley",
                        "runtime": _sim(failure_rate=1.0),
                    },
                    {
                        "id": "lambert",
                        "name": "Lambert",
                        "role": "cmo",
                        "reports_to": "ripley",
                        "runtime": {"kind": "http", "url": down, "timeout": "2s"},
                    },
                    {
                        "id": "kane",
                        "name": "Kane",
                        "role": "coo",
                        "reports_to": "ripley",
                        "runtime": _sim(hang_rate=1.0),
                    },
                    {
                        "id": "ash",
                        "name": "Ash",
                        "role": "qa",
                        "reports_to": "bishop",
                        "runtime": _sim(),
                    },
                ],
            },
            {
                "id": "matrix",
                "name": "Matrix",
                "prefix": "MAT",
                "chat": MATRIX_CHAT,
                # Recurring work, so the demo shows a routine filing on its own.
                "routines": [
                    {
                        "name": "build-check",
                        "schedule": "every 5m",
                        "assignee": "cto",
                        "title": "Check the build ({time})",
                    }
                ],
                "agents": [
                    {"id": "neo", "name": "Neo", "role": "ceo", "runtime": _sim()},
                    {
                        "id": "trinity",
                        "name": "Trinity",
                        "role": "cto",
                        "reports_to": "neo",
                        "runtime": _sim(),
                    },
                    {
                        "id": "morpheus",
                        "name": "Morpheus",
                        "role": "cpo",
                        "reports_to": "neo",
                        "runtime": _sim(),
                    },
                    {
                        "id": "niobe",
                        "name": "Niobe",
                        "role": "coo",
                        "reports_to": "neo",
                        "runtime": _sim(),
                    },
                    {
                        "id": "tank",
                        "name": "Tank",
                        "role": "qa",
                        "reports_to": "trinity",
                        "runtime": _sim(),
                    },
                    {
                        "id": "link",
                        "name": "Link",
                        "role": "community",
                        "reports_to": "neo",
                        "runtime": _sim(),
                    },
                ],
            },
        ],
    }


SEED_ISSUES = [
    ("ceo@aliens", "Draft the Q3 plan", "One page: goals, owners, dates."),
    ("ceo@aliens", "Review the hiring pipeline", ""),
    ("ceo@aliens", "Write the investor update", ""),
    ("ceo@aliens", "Pick the offsite venue", ""),
    ("cto@aliens", "Fix the login redirect loop", "Users bounce between /login and /home."),
    ("cto@aliens", "Upgrade the database driver", ""),
    ("cpo@aliens", "Spec the onboarding checklist", ""),
    ("cmo@aliens", "Plan the launch post", ""),
    ("coo@aliens", "Reconcile the vendor invoices", ""),
    ("qa@aliens", "Regression-test the billing page", ""),
]


def build_config(folder: Path) -> Config:
    return resolve_paths(parse_config(demo_config(), "(demo)", {}), folder)


async def run_demo(
    db_path: Path | None = None,
    *,
    lines: Any = None,
    out: TextIO | None = None,
    api: OfflineBotAPI | None = None,
) -> int:
    """Run the demo until the input ends (or `quit`); returns the exit status. `api` lets a
    caller (tests) keep the offline Bot API and inspect every call the bot made."""
    with tempfile.TemporaryDirectory(prefix="fleetbot-demo-") as tmp:
        folder = db_path.parent if db_path else Path(tmp)
        config = build_config(folder)
        if db_path:
            config = config.model_copy(
                update={"storage": config.storage.model_copy(update={"path": db_path})}
            )
        clock = SystemClock()
        folder.mkdir(parents=True, exist_ok=True)
        log_path = folder / "demo.log"
        # The terminal is the chat; the fleet's own log goes to a file beside the data.
        log_file = log_path.open("a", encoding="utf-8")
        logs.setup("INFO", stream=log_file)
        try:
            return await _run(config, folder, log_path, clock, lines, out, api)
        finally:
            logs.setup("WARNING")
            log_file.close()


async def _run(
    config: Config,
    folder: Path,
    log_path: Path,
    clock: SystemClock,
    lines: Any,
    out: TextIO | None,
    api: OfflineBotAPI | None = None,
) -> int:
    if not config.auth.keyring.exists():
        KeyRing.create(config.auth.keyring, clock.now())
    api = api or OfflineBotAPI(bot_username="fleetbot_demo_bot")
    api.add_user(OWNER_ID, "You", username="owner")
    api.add_group(ALIENS_CHAT, "Aliens team", members=[OWNER_ID])
    api.add_group(MATRIX_CHAT, "Matrix team", members=[OWNER_ID])
    env = {"FLEETBOT_TELEGRAM_TOKEN": api.token}
    async with Fleet(config, env, clock, sweep_interval=2.0) as fleet:
        await _break_ash(fleet)
        async with BotRunner(
            fleet,
            env,
            request=api.make_request(),
            get_updates_request=api.make_request(read_timeout=15.0),
        ):
            chat = TerminalChat(
                api,
                OWNER_ID,
                {
                    OWNER_ID: "bot → you",
                    ALIENS_CHAT: "Aliens team chat",
                    MATRIX_CHAT: "Matrix team chat",
                },
                out,
                echo_alerts=frozenset({OWNER_ID}),
            )
            chat.banner(INTRO)
            chat.banner(f"(agent API at {fleet.api_url}; data in {folder}; log: {log_path})")
            for assignee, title, body in SEED_ISSUES:
                await fleet.service.file_issue(
                    title=title, body=body, assignee=assignee, actor="demo"
                )
            await chat.run(lines if lines is not None else stdin_lines())
    return 0


async def _break_ash(fleet: Fleet) -> None:
    cfg = fleet.config
    stray_path = cfg.auth.keyring.with_name("stray-keyring.json")
    stray = (
        KeyRing.load(stray_path)
        if stray_path.exists()
        else KeyRing.create(stray_path, fleet.clock.now())
    )
    authority = TokenAuthority(stray, issuer=cfg.auth.issuer, audience=cfg.auth.audience)
    ash = await fleet.service.agent("ash")
    token = authority.issue(ash, fleet.clock.now(), cfg.auth.token_ttl)
    write_token_file(cfg.auth.token_dir, ash.id, token)
