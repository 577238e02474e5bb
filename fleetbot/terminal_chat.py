"""A chat in the terminal, for `fleetbot demo`: you are the owner, typing to the bot.

It reads standard input line by line (so a script can pipe commands in), sends each line to the
offline Bot API as the owner, and prints what the bot sends to the watched chats — new messages
and edits — with their buttons numbered. Typing a number presses that button.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TextIO

from offline_botapi.server import OfflineBotAPI

QUIET = 0.6  # seconds without new bot output that count as "the bot has answered"
MAX_WAIT = 8.0  # never wait longer than this for an answer before reading the next line


@dataclass(frozen=True, slots=True)
class _Button:
    chat_id: int
    message_id: int
    data: str
    label: str


class TerminalChat:
    def __init__(
        self,
        api: OfflineBotAPI,
        owner_id: int,
        chats: dict[int, str],
        out: TextIO | None = None,
        *,
        color: bool | None = None,
        echo_alerts: frozenset[int] = frozenset(),
    ) -> None:
        self.api = api
        self.owner_id = owner_id
        self.chats = chats  # chat id -> label shown above its messages
        # Team chats get the same alerts as the owner; showing both would print each twice.
        self.echo_alerts = echo_alerts
        self.out = out or sys.stdout
        self.color = self.out.isatty() if color is None else color
        self._seen = 0  # index into api.sent_log
        self._hidden: set[tuple[int, int]] = set()
        self._buttons: dict[int, _Button] = {}
        self._next_button = 1
        self._last_output = 0.0

    def _style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def banner(self, text: str) -> None:
        self.out.write(self._style(text, "2") + "\n")
        self.out.flush()

    def flush_bot_output(self) -> int:
        """Print every bot message and edit not printed yet; returns how many."""
        printed = 0
        log = self.api.sent_log
        while self._seen < len(log):
            call = log[self._seen]
            self._seen += 1
            if call.method.lower() not in ("sendmessage", "editmessagetext"):
                continue
            message = call.result if isinstance(call.result, dict) else None
            if message is None:
                continue
            chat_id = int(message.get("chat", {}).get("id", 0))
            if chat_id not in self.chats:
                continue
            key = (chat_id, int(message.get("message_id", 0)))
            if chat_id not in self.echo_alerts and (key in self._hidden or _is_alert(message)):
                self._hidden.add(key)  # its later edits (e.g. "resolved") stay hidden too
                continue
            self._print(message, chat_id, edited=call.method.lower() == "editmessagetext")
            printed += 1
        if printed:
            self._last_output = asyncio.get_running_loop().time()
        return printed

    def _print(self, message: dict[str, Any], chat_id: int, *, edited: bool) -> None:
        label = self.chats[chat_id] + (" (edited)" if edited else "")
        self.out.write(self._style(f"── {label} ", "36") + self._style("─" * 8, "2") + "\n")
        self.out.write(str(message.get("text", "")) + "\n")
        rows = message.get("reply_markup", {}).get("inline_keyboard", [])
        for row in rows:
            cells = []
            for button in row:
                data = button.get("callback_data")
                if data is None:
                    continue
                number = self._next_button
                self._next_button += 1
                self._buttons[number] = _Button(
                    chat_id, int(message["message_id"]), str(data), str(button.get("text", ""))
                )
                cells.append(self._style(f"[{number}]", "1;33") + f" {button.get('text', '')}")
            if cells:
                self.out.write("   " + "   ".join(cells) + "\n")
        self.out.flush()

    async def press(self, number: int) -> str | None:
        """Press button `number`; returns a complaint if it cannot be pressed."""
        button = self._buttons.get(number)
        if button is None:
            return f"there is no button [{number}]"
        try:
            await self.api.press_button(
                self.owner_id, button.chat_id, button.message_id, button.data
            )
        except LookupError:
            return f"button [{number}] ({button.label}) is no longer on its message"
        return None

    async def say(self, line: str) -> str | None:
        """Send what the owner typed: a number presses a button, anything else is a message."""
        text = line.strip()
        if not text:
            return None
        if text.isdigit():
            return await self.press(int(text))
        try:
            await self.api.send_text(self.owner_id, text)
        except ValueError as exc:
            return str(exc)
        return None

    async def settle(self) -> None:
        """Wait until the bot has been quiet for a moment (or MAX_WAIT passed)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._last_output = start
        while loop.time() - start < MAX_WAIT:
            self.flush_bot_output()
            if loop.time() - self._last_output >= QUIET:
                return
            await asyncio.sleep(0.05)

    async def watch(self) -> None:
        """Print pushed messages (alerts, summaries) as they arrive, forever."""
        while True:
            self.flush_bot_output()
            await asyncio.sleep(0.1)

    async def run(self, lines: AsyncIterator[str]) -> None:
        watcher = asyncio.get_running_loop().create_task(self.watch())
        try:
            async for line in lines:
                if line.strip().lower() in ("quit", "exit", "/quit"):
                    break
                problem = await self.say(line)
                if problem:
                    self.banner(f"({problem})")
                await self.settle()
            await self.settle()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self.flush_bot_output()


async def stdin_lines(stream: TextIO | None = None) -> AsyncIterator[str]:
    """Lines of standard input without blocking the event loop (pipes, terminals, files)."""
    stream = stream or sys.stdin
    loop = asyncio.get_running_loop()
    fileno = stream.fileno()
    if not _is_pipe_like(fileno):
        for line in stream:  # a regular file: reading it never blocks for long
            yield line
        return
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(fileno), "rb", 0)
    )
    try:
        while True:
            raw = await reader.readline()
            if not raw:
                return
            yield raw.decode(errors="replace")
    finally:
        transport.close()


def _is_alert(message: dict[str, Any]) -> bool:
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    return any(str(b.get("callback_data", "")).startswith("v1:a:") for row in rows for b in row)


def _is_pipe_like(fileno: int) -> bool:
    mode = os.fstat(fileno).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)
