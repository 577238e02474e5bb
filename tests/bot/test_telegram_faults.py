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
from stack_helpers import config_data, force_status, make_auth
from telegram.ext import AIORateLimiter, ExtBot

from bot.notifier import NOTIFIER_KEY, Notifier, start_notifier
from bot.views.alerts import DIGEST_ICON
from core.alerting.book import AlertKind, Finding
from core.alerting.outbox import COALESCE_AFTER
from core.clock import ManualClock
from core.config import parse_config
from core.fleet import Fleet
from core.models import AgentStatus
from offline_botapi.server import OfflineBotAPI
from tests.bot_helpers import ALIENS_CHAT, MATRIX_CHAT, OWNER, Desk, button_data, running_desk

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
            # `sending` is checked after `due`: a row may go from pending to sending between.
            quiet = notifier.hold_until > desk.clock.now() or not await outbox.due(1)
            if quiet and not (await outbox.counts()).get("sending"):
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
    """Alert id -> sendMessage calls that delivered it to `chat` (edits not counted): the
    alert's own message, or a digest that lists it."""
    return Counter(
        int(alert_id)
        for c in desk.api.calls("sendMessage")
        if str(c.params["chat_id"]) == str(chat)
        for alert_id in carried(str(c.params["text"]))
    )


def carried(text: str) -> list[str]:
    """The alert ids a message delivers: every one a digest lists, or the alert's own."""
    if text.startswith(DIGEST_ICON):
        return _HEAD.findall(text)
    return [m.group(1) for m in [_HEAD.search(text)] if m]


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
        # Ten minutes of backlog: one digest per chat, the rows it carries kept as coalesced.
        states = Counter((r.chat, r.kind, r.state) for r in await desk.fleet.outbox.rows())
        assert states == {
            (str(ALIENS_CHAT), "alert", "coalesced"): 5,
            (str(ALIENS_CHAT), "alert_digest", "sent"): 1,
            (str(MATRIX_CHAT), "alert", "coalesced"): 5,
            (str(MATRIX_CHAT), "alert_digest", "sent"): 1,
            (str(OWNER), "alert", "coalesced"): 10,
            (str(OWNER), "alert_digest", "dead"): 1,  # blocked: dropped, not retried forever
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
        # The first alert went out in the digest: the digest is edited, the alert struck out.
        [digest] = [m for m in api.messages(supergroup) if f"#{first} " in m["text"]]
        assert digest["text"].startswith(DIGEST_ICON) and "1 resolved" in digest["text"]
        assert f"<s>#{first} " in api.source_text(supergroup, digest["message_id"])
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


async def test_an_outage_backlog_arrives_as_one_digest_per_chat(tmp_path: Path) -> None:
    """Regression (issue 11, item 8): after an outage every queued alert was its own message,
    trickling out at a group's 20 a minute; now the backlog is one digest per chat, with the
    counts by kind (worst first), the fix buttons, and edits as the alerts resolve."""
    async with running_desk(tmp_path) as desk:
        api, book = desk.api, desk.fleet.alerts
        await force_status(desk.fleet.service, "hicks", AgentStatus.ERROR)
        api.outage(True)
        kinds: dict[int, AlertKind] = {}
        plan = [AlertKind.AGENT_STUCK] * 4 + [AlertKind.AGENT_UNAUTHENTICATED] * 6
        plan += [AlertKind.AGENT_ERROR] * 20
        for n, kind in enumerate(plan):  # 30 alerts over ten minutes, the worst kind last
            subject = "hicks" if n == len(plan) - 1 else f"ali-{n}"
            label = "Hicks (qa)" if subject == "hicks" else f"ali-{n} (dev)"
            await book.raise_(
                Finding(kind, f"agent:{subject}", "aliens", label, f"problem {n}", f"code{n}")
            )
            kinds[max(a.id for a in await book.firing())] = kind
            await step(desk, 20)
        assert api.calls("sendMessage") == []
        api.outage(False)
        for _ in range(12):
            await step(desk, 10)

        team = [c for c in api.calls("sendMessage") if str(c.params["chat_id"]) == str(ALIENS_CHAT)]
        digests = [c for c in team if str(c.params["text"]).startswith(DIGEST_ICON)]
        assert len(digests) == 1 and len(team) <= 1 + COALESCE_AFTER
        assert new_alert_messages(desk, ALIENS_CHAT) == Counter(dict.fromkeys(kinds, 1))
        assert new_alert_messages(desk, OWNER) == Counter(dict.fromkeys(kinds, 1))
        [message] = [m for m in api.messages(ALIENS_CHAT) if m["text"].startswith(DIGEST_ICON)]
        text = message["text"]
        assert "30 alerts held up" in text and "30 open" in text
        heads = [
            "Agents in error: 20 open · critical",
            "Agents unauthenticated: 6 open · critical",
            "Runs stuck: 4 open",
        ]
        assert all(h in text for h in heads)
        assert [text.index(h) for h in heads] == sorted(text.index(h) for h in heads)
        rows = await desk.fleet.outbox.rows()
        coalesced = [r for r in rows if r.state == "coalesced" and r.chat == str(ALIENS_CHAT)]
        assert {r.alert_id for r in coalesced} <= set(kinds) and coalesced
        assert all(r.error.startswith("carried by digest row") for r in coalesced)

        # Nothing missing from /alerts.
        await api.send_text(OWNER, "/alerts")
        reply = await api.wait_for_message(OWNER, lambda m: m["text"].startswith("Alerts"))
        listing = reply["text"]
        assert "30 open alerts" in listing and all(f"#{a} " in listing for a in kinds)

        # The buttons are the alerts' own: one Rotate tokens, one Reset per erroring alert.
        keyboard = message["reply_markup"]["inline_keyboard"]
        pressable = [b for row in keyboard for b in row]
        assert len(pressable) <= 100 and all(len(b["callback_data"]) <= 64 for b in pressable)
        assert sum("Rotate tokens" in b["text"] for b in pressable) == 1
        hicks = max(kinds)  # the last one raised is about Hicks, a real agent in error
        answer = await desk.press(OWNER, ALIENS_CHAT, message, button_data(message, f"#{hicks}"))
        assert answer == "Reset 1 of 1."
        answer = await desk.press(OWNER, ALIENS_CHAT, message, button_data(message, "Rotate"))
        assert answer == "Confirm the rotation below."

        # Resolving edits the digest in place: struck through, counted, then all resolved.
        errors = [a for a, k in kinds.items() if k is AlertKind.AGENT_ERROR and a != hicks]
        await book.resolve(*[m.fingerprint for a in errors for m in (await book.get(a)).members])
        await step(desk, 1)
        now = desk.current(ALIENS_CHAT, message["message_id"])
        # Hicks's was resolved by the Reset; the kind is all resolved now, so it goes last.
        assert "10 open" in now["text"] and now["text"].endswith("#30 Hicks (qa) ✓")
        assert "✅ Agents in error: 20 resolved" in now["text"]
        source = api.source_text(ALIENS_CHAT, message["message_id"])
        assert all(f"<s>#{a} " in source for a in errors)
        everything = [m.fingerprint for a in kinds for m in (await book.get(a)).active_members]
        await book.resolve(*everything)
        await step(desk, 1)
        done = desk.current(ALIENS_CHAT, message["message_id"])
        assert done["text"].startswith("✅") and "All 30 alerts" in done["text"]
        assert "reply_markup" not in done
        # Resolutions were edits: no alert went out a second time.
        assert new_alert_messages(desk, ALIENS_CHAT) == Counter(dict.fromkeys(kinds, 1))
        assert desk.errors.records == []
