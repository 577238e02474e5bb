"""Telegram's flood limits, kept by the notifier itself (see bot.notifier, "Pacing"): at most
30 messages a second overall and 20 a minute per group chat, so a busy group holds back only
its own rows."""

from __future__ import annotations

from dataclasses import dataclass

from aiolimiter import AsyncLimiter

__all__ = ["Pacer", "Pacing"]


@dataclass(frozen=True, slots=True)
class Pacing:
    """Telegram's flood limits (PTB's AIORateLimiter defaults): overall and per group chat."""

    per_second: float = 30.0
    per_group: float = 20.0
    group_period: float = 60.0


class Pacer:
    """Counts messages against Pacing: which chat may get one now, and taking its turn."""

    def __init__(self, pacing: Pacing) -> None:
        self.pacing = pacing
        self._all = AsyncLimiter(pacing.per_second, 1.0)
        self._groups: dict[str, AsyncLimiter] = {}
        # How soon a group at its limit has room again (the limiter leaks at this pace).
        self.retry_in = pacing.group_period / pacing.per_group

    def _group(self, chat: str) -> AsyncLimiter | None:
        if not chat.startswith(("-", "@")):  # groups: negative ids and @names, as in PTB
            return None
        limiter = self._groups.get(chat)
        if limiter is None:
            p = self.pacing
            limiter = self._groups[chat] = AsyncLimiter(p.per_group, p.group_period)
        return limiter

    def ready(self, chat: str) -> bool:
        group = self._group(chat)
        return group is None or group.has_capacity()

    async def take(self, chat: str) -> None:
        """Count one message to `chat` (after `ready`: the group part does not wait)."""
        group = self._group(chat)
        if group is not None:
            await group.acquire()
        await self._all.acquire()
