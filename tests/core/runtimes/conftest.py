"""Fixtures of the runtime tests: a hand-moved clock and a scripted loopback HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from runtime_fakes import FakeTime, Loopback


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    srv = Loopback()
    listener = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    srv.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        yield srv
    finally:
        listener.close()
        await listener.wait_closed()
