"""Telegram misbehaving, end to end: the real Application (BotRunner: polling, handlers, the
notifier it starts) against the offline Bot API, on a hand-wound clock.

tests/test_notifier.py proves each fault on the Notifier alone; this file runs them together
through the running bot: a 10-minute outage during which the owner blocks the bot and the team
group becomes a supergroup, then a storm of 429s; afterwards the bot still answers, alerts and
edits follow the migration, an owner who unblocks the bot gets the next alert, and a crash
while a message waits for Telegram's rate limit leaves nothing in doubt.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from telegram.ext import AIORateLimiter, ExtBot

from bot.notifier import NOTIFIER_KEY, Notifier, start_notifier
from core.alerting.book import AlertKind, Finding
from core.clock import ManualClock
from core.config import parse_config
from core.fleet import Fleet
from offline_botapi.server import OfflineBotAPI
from tests.bot_helpers import ALIENS_CHAT, MATRIX_CHAT, OWNER, Desk, running_desk
from tests.conftest import config_data, make_auth

_HEAD = re.compile(r"#(\d+) ")


def notifier_of(desk: Desk) -> Notifier:
    app = desk.runner.application
    assert app is not None
    notifier = app.bot_data[NOTIFIER_KEY]
    assert isinstance(notifier, Notifier)
    return notifier


async def step(desk: Desk, seconds: float) -> None:
    """Let `seconds` of simulated time pass and wait until the running notifier has sent all
    it may send by then (or is holding off: an outage, a 429)."""
    notifier, outbox = notifier_of(desk), desk.fleet.outbox
    desk.clock.advance(seconds)
    await desk.fleet.alerts.flush()
    outbox.notify()
    async with asyncio.timeout(5):
        while True:
            await asyncio.sleep(0.002)
            if (await outbox.counts()).get("sending"):
                continue
            if notifier.hold_until > desk.clock.now() or not await outbox.due(1):
                return


async def raise_alert(desk: Desk, company: str, n: int) -> int:
    """A distinct alert (its own cause) about company `company`; returns its id."""
    await desk.fleet.alerts.raise_(
        Finding(
            AlertKind.AGENT_ERROR,
            f"agent:{company}-{n}",
            company,
            f"{company}-{n} (dev)",
            f"failure number {n}",
            f"code{n}",
        )
    )
    return max(a.id for a in await desk.fleet.alerts.firing())


def new_alert_messages(desk: Desk, chat: int) -> Counter[int]:
    """Alert id -> sendMessage calls that delivered it to `chat` (edits not counted)."""
    return Counter(
        int(m.group(1))
        for c in desk.api.calls("sendMessage")
        if str(c.params["chat_id"]) == str(chat)
        for m in [_HEAD.search(str(c.params["text"]))]
        if m
    )


async def test_outage_blocked_owner_migration_and_429s_deliver_every_alert_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_desk(tmp_path) as desk:
        api = desk.api
        api.block_bot(OWNER)  # the owner blocked the bot (403 from now on)
        api.outage(True)  # and Telegram is unreachable for ten minutes, bot polling included
        supergroup = api.migrate_group(ALIENS_CHAT)  # meanwhile the team group was upgraded
        raised: dict[int, str] = {}
        for minute in range(10):
            company = "aliens" if minute % 2 == 0 else "matrix"
            raised[await raise_alert(desk, company, minute)] = company
            for _ in range(6):
                await step(desk, 10)
        assert api.faults_served["outage"] >= 10
        assert api.calls("sendMessage") == [] and api.calls("editMessageText") == []
        # Expected weather, not errors: polling failures are one warning line each.
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
        assert any("polling Telegram for updates failed" in r.message for r in caplog.records)

        api.outage(False)
        api.inject_429(6, retry_after=30, methods=["sendMessage", "editMessageText"])
        for _ in range(90):  # 15 minutes at whatever pace backoff and retry_after allow
            await step(desk, 10)
        assert api.faults_served["429"] == 6

        # Each alert exactly once where it belongs: the supergroup, never the old group id.
        aliens = {a for a, c in raised.items() if c == "aliens"}
        matrix = set(raised) - aliens
        assert new_alert_messages(desk, supergroup) == Counter(dict.fromkeys(aliens, 1))
        assert new_alert_messages(desk, MATRIX_CHAT) == Counter(dict.fromkeys(matrix, 1))
        assert api.messages(ALIENS_CHAT) == [] and api.messages(OWNER) == []
        states = Counter((r.chat, r.state) for r in await desk.fleet.outbox.rows())
        assert states == {
            (str(ALIENS_CHAT), "sent"): 5,
            (str(MATRIX_CHAT), "sent"): 5,
            (str(OWNER), "dead"): 10,  # blocked: dropped, not retried forever
        }

        # The bot came through it: it answers, and nothing it did was an error.
        answer = await desk.ask(OWNER, "/start")  # writing to the bot also unblocks it
        assert "fleetbot" in answer["text"].lower()
        assert desk.errors.records == []

        # After the migration: new alerts and edits go straight to the supergroup, and the
        # owner, who has unblocked the bot, gets alerts again at once.
        late = await raise_alert(desk, "aliens", 99)
        await step(desk, 31)
        assert new_alert_messages(desk, supergroup)[late] == 1
        assert new_alert_messages(desk, OWNER) == Counter({late: 1})
        first = min(aliens)
        await desk.fleet.alerts.resolve(f"agent_error:agent:aliens-{first - 1}")
        await step(desk, 1)
        resolved = [m for m in api.messages(supergroup) if f"#{first} " in m["text"]]
        assert [m["text"][:1] for m in resolved] == ["✅"]
        assert api.messages(ALIENS_CHAT) == []


async def test_an_owner_who_unblocks_the_bot_gets_the_next_alert_at_once(tmp_path: Path) -> None:
    async with running_desk(tmp_path) as desk:
        desk.api.block_bot(OWNER)
        first = await raise_alert(desk, "matrix", 1)
        await step(desk, 31)
        assert desk.api.messages(OWNER) == []
        assert await desk.fleet.outbox.undeliverable(str(OWNER))
        await desk.ask(OWNER, "/status")  # unblocked: any message to the bot says so
        assert not await desk.fleet.outbox.undeliverable(str(OWNER))
        second = await raise_alert(desk, "matrix", 2)
        await step(desk, 31)
        assert new_alert_messages(desk, OWNER) == Counter({second: 1})
        assert first != second


async def test_a_team_chat_that_became_a_supergroup_keeps_its_company(tmp_path: Path) -> None:
    async with running_desk(tmp_path) as desk:
        supergroup = desk.api.migrate_group(ALIENS_CHAT)
        # In the old group `cto` meant the aliens' cto; in its new incarnation too.
        answer = await desk.ask(OWNER, "/issue cto Fix the login page", chat=supergroup)
        assert "Filed ALI-1 for bishop" in answer["text"]
        # Telegram's migrate messages already told the bot: alerts go straight there, without
        # a refused first attempt at the old id.
        alert = await raise_alert(desk, "aliens", 1)
        await step(desk, 31)
        assert new_alert_messages(desk, supergroup) == Counter({alert: 1})
        rows = [r for r in await desk.fleet.outbox.rows() if r.chat == str(ALIENS_CHAT)]
        assert rows and all((r.state, r.attempts, r.error) == ("sent", 1, "") for r in rows)


async def test_a_crash_while_a_message_waits_for_the_rate_limit_leaves_nothing_in_doubt(
    tmp_path: Path, clock: ManualClock
) -> None:
    """More than 20 messages a minute to one group: Telegram's limit makes the 21st wait. It
    must wait while still pending, so a crash then costs nothing (it used to be in doubt), and
    it must not hold up other chats (the owner's alerts used to queue behind it)."""
    api = OfflineBotAPI()
    api.add_user(OWNER, "Owner")
    api.add_group(MATRIX_CHAT, "Matrix", members=[OWNER])
    data = config_data(tmp_path)
    data["companies"][1]["chat"] = MATRIX_CHAT
    config = parse_config(data, "test")
    make_auth(config, clock)
    async with Fleet(config, {}, clock, serve_api=False, periodic=False) as fleet:
        # The Application's bot, with the rate limiter `fleetbot run` gives it.
        bot = ExtBot(api.token, request=api.make_request(), rate_limiter=AIORateLimiter())
        async with bot:
            app = SimpleNamespace(bot=bot, bot_data={})
            stop = await start_notifier(app, fleet)
            try:
                for n in range(25):
                    await fleet.outbox.enqueue_text(MATRIX_CHAT, f"note {n}", f"note:{n}")
                await fleet.outbox.enqueue_text(OWNER, "for the owner", "dm")
                message = await api.wait_for_message(OWNER, timeout=2)
                assert message["text"] == "for the owner"
                assert len(api.messages(MATRIX_CHAT)) == 20  # the rest wait for the limit
                await asyncio.sleep(0.2)
            finally:
                await stop()  # the process dies here, as far as the outbox can tell
            assert (await fleet.outbox.counts()) == {"sent": 21, "pending": 5}
            restarted = Notifier(bot, fleet.outbox, fleet.alerts, clock)
            assert await restarted.reconcile() == 0
            await restarted.drain()
        texts = Counter(m["text"] for m in api.messages(MATRIX_CHAT))
        assert texts == Counter(f"note {n}" for n in range(25))
