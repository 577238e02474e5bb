"""Time as a dependency: the real clock in production, a hand-wound one in tests and benchmarks."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; `advance` and `set` drive simulated time."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError("a ManualClock does not go backwards")
        self._now = when


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def day_key(ts: float) -> str:
    return utc(ts).strftime("%Y-%m-%d")


def month_start(ts: float) -> float:
    d = utc(ts)
    return datetime(d.year, d.month, 1, tzinfo=UTC).timestamp()


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
