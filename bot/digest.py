"""The daily digest: the last 24 hours per company, sent to owners and to each team chat.

Scheduled on the Application's JobQueue at `telegram.digest_at` (UTC) every day; `/digest`
shows the same text on demand. Owners get the whole fleet, a team chat only its company.
"""

from __future__ import annotations

import datetime as dtm
import logging

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import Application, ContextTypes

from bot import render
from bot.desk import DESK_KEY, Desk, desk_of
from core.reports.activity import fleet_activity

log = logging.getLogger(__name__)
DAY = 86400.0
JOB_NAME = "daily-digest"
SUMMARIES = 10  # newest agent summaries shown when telegram.run_summaries is "digest"


async def digest_text(desk: Desk, now: float, company_id: str | None = None) -> str:
    keep = SUMMARIES if desk.config.telegram.run_summaries == "digest" else 0
    activity = await fleet_activity(desk.service.db, now - DAY, summaries=keep)
    if company_id is not None:
        activity = [a for a in activity if a.company.id == company_id]
    return render.digest(activity, now - DAY, now)


def digest_time(hhmm: str) -> dtm.time:
    hours, minutes = hhmm.split(":")
    return dtm.time(int(hours), int(minutes), tzinfo=dtm.UTC)


def schedule_digest(application: Application) -> None:  # type: ignore[type-arg]
    """Run the digest every day at telegram.digest_at (UTC)."""
    desk: Desk = application.bot_data[DESK_KEY]
    queue = application.job_queue
    if queue is None:
        raise RuntimeError("the daily digest needs python-telegram-bot's job queue (APScheduler)")
    queue.run_daily(_daily_job, time=digest_time(desk.config.telegram.digest_at), name=JOB_NAME)


async def _daily_job(context: ContextTypes.DEFAULT_TYPE) -> None:
    desk = desk_of(context)
    await deliver_digest(context.bot, desk, desk.clock.now())


async def deliver_digest(bot: Bot, desk: Desk, now: float) -> int:
    """Send the digest to every owner and every team chat; returns how many messages went.

    A recipient that cannot be reached (never pressed Start, blocked the bot, bot removed
    from the group) is logged and skipped: one bad chat must not cost the others their digest.
    """
    sent = 0
    whole = await digest_text(desk, now)
    targets: list[tuple[int | str, str, int | None]] = [
        (o, whole, None) for o in desk.access.owners
    ]
    for company in desk.config.companies:
        if company.chat is None:
            continue
        thread = company.topics.summaries if company.topics else None
        targets.append((company.chat, await digest_text(desk, now, company.id), thread))
    for chat_id, text, thread in targets:
        try:
            for part in render.split_html(text):
                await bot.send_message(
                    chat_id, part, parse_mode=ParseMode.HTML, message_thread_id=thread
                )
                sent += 1
        except TelegramError as exc:
            log.warning("daily digest to chat %s failed: %s", chat_id, exc)
    await desk.service.audit("fleetbot", "digest.sent", "", {"messages": sent})
    return sent
