"""Fakes the runtime tests share: a job, a clock that moves only when a runtime sleeps, and a
loopback HTTP server whose answers a test scripts (including answering late, or never).

Plain helpers, not fixtures: a conftest.py here would shadow the `conftest` other tests import."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from core.runtimes.base import Dispatch

TOKEN = "fbt-run-token-5f3a9c1e7d"


def job(
    *,
    deadline: float | None = None,
    deadline_in: float = 10.0,
    wake_reason: str = "heartbeat",
    on_accepted: Callable[[str], Awaitable[None]] | None = None,
) -> Dispatch:
    return Dispatch(
        run_id="run-42",
        agent_id="dev-1",
        agent_name="Dev One",
        company_id="acme",
        issue={
            "id": "ACME-7",
            "title": "Fix the login page",
            "body": "It 500s on submit.",
            "status": "in_progress",
        },
        api_url="http://127.0.0.1:8080",
        token=TOKEN,
        token_file=None,
        model="glm-5.2-cloud",
        max_turns=12,
        skills=("issues.create",),
        deadline=deadline if deadline is not None else time.time() + deadline_in,
        wake_reason=wake_reason,
        on_accepted=on_accepted,
    )


@dataclass
class Accepted:
    """An `on_accepted` callback that remembers what it was told."""

    ids: list[str] = field(default_factory=list)

    async def __call__(self, external_id: str) -> None:
        self.ids.append(external_id)


@dataclass
class FakeTime:
    """Epoch seconds that move only when the runtime sleeps: minutes of backoff take no time."""

    now: float = field(default_factory=time.time)
    slept: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


# What the server does with a request: (status, headers, body) to answer, or None to drop the
# connection without a word. It may sleep first, to answer late.
Answer = Callable[[Seen], Awaitable[tuple[int, dict[str, str], bytes] | None]]


async def _no_content(_: Seen) -> tuple[int, dict[str, str], bytes] | None:
    return 204, {}, b""


@dataclass
class Loopback:
    """A tiny HTTP/1.1 server on 127.0.0.1 that records each request and answers as scripted."""

    answer: Answer = _no_content
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            seen = Seen(method, path, headers, body)
            self.seen.append(seen)
            answer = await self.answer(seen)
            if answer is not None:
                status, extra, content = answer
                lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(content)}"]
                lines += [f"{name}: {value}" for name, value in extra.items()]
                lines += ["Connection: close", "", ""]
                writer.write("\r\n".join(lines).encode() + content)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client gave up first
        finally:
            writer.close()
            await writer.wait_closed()


@asynccontextmanager
async def serving() -> AsyncIterator[Loopback]:
    """A Loopback listening on 127.0.0.1 until the block ends."""
    srv = Loopback()
    listener = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    srv.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        yield srv
    finally:
        listener.close()
        await listener.wait_closed()
