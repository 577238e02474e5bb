"""The bot end to end for tests: a real Fleet (SQLite under tmp_path, simulated agents with no
latency) and the real Application run by BotRunner against the offline Bot API.

People: an owner, an operator, a viewer and a stranger, each with a private chat; the two
companies' team chats are groups everyone is in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from store_helpers import storage

from bot.desk import DESK_KEY, Desk as BotDesk
from bot.runner import BotRunner
from core.auth.keyring import KeyRing
from core.clock import ManualClock
from core.config import Config, parse_config
from core.fleet import Fleet
from offline_botapi.parse_mode import parse_html
from offline_botapi.server import OfflineBotAPI

OWNER, OPERATOR, VIEWER, STRANGER = 1001, 1002, 1003, 1004
ALIENS_CHAT, MATRIX_CHAT = -4001, -4002
SIMULATED = {"kind": "simulated", "latency": 0, "seed": 7}

FLEET: dict[str, Any] = {
    "telegram": {"owners": [OWNER], "operators": [OPERATOR], "viewers": [VIEWER]},
    "defaults": {"heartbeat": "4h", "model": "cheap-model"},
    "companies": [
        {
            "id": "aliens",
            "name": "Alex Kerber AB",
            "prefix": "ALI",
            "chat": ALIENS_CHAT,
            "agents": [
                {"id": "ripley", "name": "Ripley", "role": "ceo", "runtime": SIMULATED},
                {"id": "bishop", "name": "Bishop", "role": "cto", "runtime": SIMULATED},
                {"id": "hicks", "name": "Hicks", "role": "qa", "runtime": SIMULATED},
                {"id": "hudson", "name": "Hudson", "role": "qa", "runtime": SIMULATED},
            ],
        },
        {
            "id": "matrix",
            "name": "StarDust Meet",
            "prefix": "MAT",
            "chat": MATRIX_CHAT,
            "agents": [
                {"id": "morpheus", "name": "Morpheus", "role": "ceo", "runtime": SIMULATED},
                {"id": "trinity", "name": "Trinity", "role": "cto", "runtime": SIMULATED},
            ],
        },
    ],
}


def bot_config(tmp_path: Path, **sections: Any) -> Config:
    data: dict[str, Any] = {
        **FLEET,
        "storage": storage(tmp_path),
        "auth": {
            "keyring": str(tmp_path / "secrets" / "keyring.json"),
            "token_dir": str(tmp_path / "secrets" / "tokens"),
        },
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(data, "bot test config")


class ErrorLog(logging.Handler):
    """Collects ERROR records from the bot: a test fails if the bot hit an unexpected error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Desk:
    api: OfflineBotAPI
    fleet: Fleet
    clock: ManualClock
    runner: BotRunner
    errors: ErrorLog
    seen: dict[int, int] = field(default_factory=dict)

    @property
    def bot_desk(self) -> BotDesk:
        """The bot's own desk (its access rules, confirmations, clock)."""
        app = self.runner.application
        assert app is not None
        desk: BotDesk = app.bot_data[DESK_KEY]
        return desk

    async def ask(self, user: int, text: str, chat: int | None = None) -> dict[str, Any]:
        """Send `text` as `user` and return the bot's next message in that chat, once the
        command's audit row is written (the bot audits after it answers)."""
        _, reply = await self.say(user, text, chat)
        return reply

    async def say(
        self, user: int, text: str, chat: int | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Like `ask`, and also return the message the user sent (to edit it, say)."""
        before = await self.command_rows(user)
        sent = await self.api.send_text(user, text, chat_id=chat)
        if chat is None:
            reply = await self.reply(user)
        else:
            # In a team chat the notifier may post summaries meanwhile; the answer quotes us.
            reply = await self.reply(chat, quoting=sent["message_id"])
        async with asyncio.timeout(2):
            while await self.command_rows(user) == before:  # noqa: ASYNC110 - polls the store
                await asyncio.sleep(0.002)
        return sent, reply

    async def command_rows(self, user: int) -> int:
        """Audit rows the bot wrote for `user`'s commands (not the core's own rows)."""
        found = await self.fleet.db.scalar(
            "SELECT count(*) FROM audit WHERE actor = ? AND (action LIKE '/%' "
            "OR action = 'unknown')",
            (f"tg:{user}",),
        )
        return int(found or 0)

    async def reply(
        self,
        chat: int,
        timeout: float = 5.0,  # noqa: ASYNC109
        *,
        quoting: int | None = None,
    ) -> dict[str, Any]:
        def wanted(m: dict[str, Any]) -> bool:
            return quoting is None or m.get("reply_to_message", {}).get("message_id") == quoting

        message = await self.api.wait_for_message(chat, wanted, timeout=timeout)
        # Every reply went through the offline API's strict HTML check; check it again here
        # so a test names the offending source if the parser ever changes.
        parse_html(self.api.source_text(chat, message["message_id"]))
        return message

    async def replies(self, chat: int, count: int) -> list[dict[str, Any]]:
        return [await self.reply(chat) for _ in range(count)]

    async def press(self, user: int, chat: int, message: dict[str, Any], data: str) -> str:
        """Press a button on `message` and return the callback answer's text."""
        before = len(self.api.callback_answers)
        query_id = await self.api.press_button(user, chat, message["message_id"], data)
        await self.api.wait_for_call(
            "answerCallbackQuery", lambda c: c.params["callback_query_id"] == query_id
        )
        assert len(self.api.callback_answers) > before
        answer = next(a for a in self.api.callback_answers if a["callback_query_id"] == query_id)
        return str(answer["text"] or "")

    def current(self, chat: int, message_id: int) -> dict[str, Any]:
        """The message as it is now (after edits)."""
        return next(m for m in self.api.messages(chat) if m["message_id"] == message_id)

    async def settle(self) -> None:
        """Let wake-ups and dispatches the last action started finish."""
        await self.fleet.scheduler.drain()
        await asyncio.sleep(0)

    async def audit(self, limit: int = 200) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.fleet.service.audit_log(limit)]


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """Button text -> callback data."""
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    return {b["text"]: b["callback_data"] for row in rows for b in row if "callback_data" in b}


def button_data(message: dict[str, Any], label: str) -> str:
    found = [d for t, d in buttons(message).items() if label.lower() in t.lower()]
    assert found, f"no button like {label!r} in {list(buttons(message))}"
    return found[0]


@asynccontextmanager
async def running_desk(
    tmp_path: Path, *, config: Config | None = None, **app_options: Any
) -> AsyncIterator[Desk]:
    config = config or bot_config(tmp_path)
    clock = ManualClock()
    KeyRing.create(config.auth.keyring, clock.now())
    api = OfflineBotAPI()
    for uid, name in ((OWNER, "Olga"), (OPERATOR, "Omar"), (VIEWER, "Vera"), (STRANGER, "Sam")):
        api.add_user(uid, name, name.lower())
    api.add_group(ALIENS_CHAT, "Aliens team", members=[OWNER, OPERATOR, VIEWER, STRANGER])
    api.add_group(MATRIX_CHAT, "Matrix team", members=[OWNER, OPERATOR, VIEWER])
    env = {"FLEETBOT_TELEGRAM_TOKEN": api.token}
    errors = ErrorLog()
    logging.getLogger("bot").addHandler(errors)
    try:
        async with Fleet(config, env, clock, serve_api=False, periodic=False) as fleet:
            app_options.setdefault("daily_digest", False)
            async with BotRunner(
                fleet,
                env,
                request=api.make_request(),
                get_updates_request=api.make_request(),
                **app_options,
            ) as runner:
                desk = Desk(api, fleet, clock, runner, errors)
                yield desk
                await fleet.scheduler.drain()
    finally:
        logging.getLogger("bot").removeHandler(errors)
