"""The desk at a glance: /start /help /whoami /status /costs /digest, and the daily digest job.

Each command is wrapped by `access.guarded`, which checks the role, answers bad arguments with
the usage line and audits the call; a handler only parses, asks the service and renders.

The digest covers the last 24 hours per company. It is scheduled on the Application's JobQueue
at `telegram.digest_at` (UTC) every day: owners get the whole fleet, each team chat only its
company. `/digest` shows the same text on demand.
"""

from __future__ import annotations

import datetime as dtm
import logging

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import Application, ContextTypes

from bot import args
from bot.access import ANONYMOUS_HINT, guarded
from bot.desk import DESK_KEY, Call, Desk, desk_of
from bot.handlers.alerts import firing_by_company
from bot.roles import ANONYMOUS_ADMIN, COMMANDS, Role
from bot.views import cards, render, roi as roi_view
from core import AgentNotFound

log = logging.getLogger(__name__)
DAY = 86400.0
JOB_NAME = "daily-digest"
SUMMARIES = 10  # newest agent summaries shown when telegram.run_summaries is "digest"


@guarded("start")
async def start(call: Call) -> None:
    """Greet, say who you are here, and show the board's one-line gist."""
    boards = await call.service.board(call.now)
    agents = sum(sum(b.agents.values()) for b in boards)
    work = sum(b.open_issues for b in boards)
    await call.reply(
        "👋 <b>fleetbot</b> — the desk for your agent fleet.\n"
        f"You are {call.role.label} here. {render.count(len(boards), 'company')}, "
        f"{render.count(agents, 'agent')}, {render.count(work, 'open issue')}.\n"
        "/status for the board, /help for everything you can do."
    )


@guarded("help")
async def help_(call: Call) -> None:
    """The commands this person may use, with their usage."""
    lines = [f"<b>What you can do</b> (you are {call.role.label})"]
    for c in COMMANDS:
        if c.need <= call.role:
            lines.append(f"<code>{render.esc(c.usage)}</code> — {render.esc(c.about)}")
    lines.append(
        "\nASSIGNEE is an agent id or a role; write role@company when a role exists in "
        "several companies. Durations: 30m, 4h, 1d."
    )
    if call.role >= Role.OPERATOR:
        approvers = call.desk.config.telegram.approvers
        who = "owners" if approvers == "owners" else "owners and operators"
        lines.append(
            "\n<b>Talking to agents</b>: reply to an agent's summary, a run's summary or an "
            "issue card to comment on that issue; its agent is woken with your words. An "
            "agent's question comes as a card: tap a choice or reply with your answer. "
            f"Approvals (Approve/Reject) are answered by {who}. /waiting lists what is open; "
            "owners also get it as a pinned card."
        )
    await call.reply("\n".join(lines))


@guarded("whoami")
async def whoami(call: Call) -> None:
    """Your user id and role; works for strangers too (it is how they learn their id)."""
    if call.user_id == ANONYMOUS_ADMIN:
        # The id is GroupAnonymousBot's, the same for every anonymous admin: never offer it.
        text = f"🕶 {ANONYMOUS_HINT}"
    else:
        user = call.update.effective_user
        name = render.esc(user.full_name) if user is not None else "you"
        text = f"You are {name}, Telegram user id <code>{call.user_id}</code>.\n"
        if call.role is Role.STRANGER:
            text += (
                "You are not on this desk yet: ask an owner to add your id to telegram.owners, "
                "operators or viewers in config.yaml."
            )
        else:
            text += f"Role here: <b>{call.role.label}</b>."
    if call.chat_id is not None and call.chat_id != call.user_id:
        text += f"\nThis chat's id: <code>{call.chat_id}</code>."
    await call.reply(text)


@guarded("status")
async def status(call: Call) -> None:
    """The board: per company, agents by status (those whose runtime is down counted as
    unreachable), work, alerts firing, spend this month."""
    args.no_args(call.rest)
    boards = await call.service.board(call.now)
    watch = call.desk.fleet.runtime_watch
    down: dict[str, dict[str, int]] = {}
    if watch.failing():  # the whole fleet is read only when some runtime is down
        agents = await call.service.agents()
        shown = watch.unreachable(agents)
        for a in agents:
            if a.id in shown:
                counts = down.setdefault(a.company_id, {})
                counts[a.status.value] = counts.get(a.status.value, 0) + 1
    firing = await firing_by_company(call.desk)
    replicas = await call.desk.fleet.leadership.replicas()
    await call.reply(render.status_board(boards, firing, call.now, down, replicas))


@guarded("costs")
async def costs(call: Call) -> None:
    """LLM calls, tokens and spend this month per company, with the biggest spenders; for one
    agent, its heartbeat ROI (core.reports.roi)."""
    word = args.optional_word(call.rest, "company or agent")
    company = word or call.desk.chat_company(call.chat_id)
    if word is not None and await cards.company_or_none(call.desk, word) is None:
        try:
            agent = await call.service.agent(word)
        except AgentNotFound:
            raise args.UsageError(f"{word!r} is neither a company nor an agent") from None
        [mine] = [r for r in await call.service.roi(agent.company_id) if r.agent.id == agent.id]
        await call.reply(roi_view.agent_roi(mine))
        return
    companies = await call.service.companies()
    company_id = None
    if company is not None:
        company_id = (await call.service.company(company)).id
        companies = [c for c in companies if c.id == company_id]
    month = await call.desk.fleet.costs.month(company_id)
    budgets = {c.id: c.budget.monthly_usd if c.budget else None for c in call.desk.config.companies}
    await call.reply(render.costs(month, companies, await call.service.agents(company_id), budgets))


@guarded("digest")
async def digest(call: Call) -> None:
    """The daily digest for the last 24 hours, now."""
    args.no_args(call.rest)
    await call.reply(await digest_text(call.desk, call.now))


async def digest_text(desk: Desk, now: float, company_id: str | None = None) -> str:
    keep = SUMMARIES if desk.config.telegram.run_summaries == "digest" else 0
    activity = await desk.service.activity(now - DAY, summaries=keep)
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
