"""The pinned "waiting on you" card in each owner's private chat, edited in place.

Whenever a question opens, is answered or is cancelled (core events), the card is brought up to
date: the message the bot pinned in that chat is edited (the chat's `pin` message link says
which), or, if there is none yet (or it was deleted) and something waits, a new card is sent,
pinned without a notification, and linked. An owner who never started the bot, or blocked it,
is skipped until they write to it. The card is rebuilt from the store each time, so a missed
event heals on the next one, and `start` brings it up to date after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Bot, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.views.questions import pinned_card
from core import Fleet, FleetService, QuestionAnswered, QuestionAsked, QuestionCancelled

log = logging.getLogger(__name__)
PINNED_KEY = "fleetbot.pinned"  # where start_pinned_cards leaves the keeper in bot_data


class PinnedCards:
    """`await start()` subscribes and shows the cards; `aclose()` stops; `settle()` waits
    for pending refreshes (tests)."""

    def __init__(self, bot: Bot, fleet: Fleet) -> None:
        self.bot = bot
        self.fleet = fleet
        self.service: FleetService = fleet.service
        self.owners = list(fleet.config.telegram.owners)
        self._dirty = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        self._unsubscribe = self.fleet.events.subscribe(self._on_event)
        self._task = asyncio.get_running_loop().create_task(self._work(), name="pinned-cards")
        self.refresh()

    async def aclose(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _on_event(self, event: object) -> None:
        if isinstance(event, QuestionAsked | QuestionAnswered | QuestionCancelled):
            self.refresh()

    def refresh(self) -> None:
        """Bring every owner's card up to date soon (events in a burst: one pass)."""
        self._idle.clear()
        self._dirty.set()

    async def settle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def _work(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._refresh_all()
            except Exception:
                log.exception("could not update the pinned waiting cards; the next change retries")
            if not self._dirty.is_set():
                self._idle.set()

    async def _refresh_all(self) -> None:
        questions = await self.service.open_questions()
        text, keyboard = pinned_card(questions, self.fleet.clock.now())
        for owner in self.owners:
            await self._show(owner, text, keyboard, bool(questions))

    async def _show(
        self, chat: int, text: str, keyboard: InlineKeyboardMarkup | None, anything: bool
    ) -> None:
        link = await self.service.pinned_card(chat)
        try:
            if link is not None:
                try:
                    await self.bot.edit_message_text(
                        text,
                        chat_id=chat,
                        message_id=link.message_id,
                        parse_mode=ParseMode.HTML,
                        reply_markup=keyboard,
                    )
                    return
                except BadRequest as exc:
                    said = exc.message.lower()
                    if "not modified" in said:
                        return
                    if "not found" not in said and "can't be edited" not in said:
                        raise
                    # Deleted by the owner: a new card takes its place.
                    await self.service.forget_message(chat, link.message_id)
            if not anything:
                return  # nothing waits and there is no card: nothing worth a message
            sent = await self.bot.send_message(
                chat,
                text,
                parse_mode=ParseMode.HTML,
                reply_markup=keyboard,
                disable_notification=True,
            )
            await self.service.link_message(chat, sent.message_id, "pin")
            with contextlib.suppress(BadRequest):  # unpinnable: still a card at the bottom
                await self.bot.pin_chat_message(chat, sent.message_id, disable_notification=True)
        except Forbidden as exc:
            log.info("owner %s cannot get the waiting card (%s); skipped", chat, exc.message)
        except TelegramError as exc:
            log.warning("the waiting card for %s was not updated: %s", chat, exc.message)


async def start_pinned_cards(app: Any, fleet: Fleet) -> Callable[[], Awaitable[None]]:
    """Start keeping the owners' pinned cards with the application's bot; returns the stop
    function."""
    cards = PinnedCards(app.bot, fleet)
    bot_data = getattr(app, "bot_data", None)
    if isinstance(bot_data, dict):
        bot_data[PINNED_KEY] = cards  # for tests that wait for it
    await cards.start()
    return cards.aclose
