"""The notifier against the offline Bot API: alerts sent once, edited in place, resolved; 429
storms, a 10-minute outage, a blocked bot, a migrated group, and a crash between send and mark."""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from stack_helpers import config_data, make_auth
from telegram import Bot
from telegram.error import RetryAfter

from bot.notifier import Notifier, retry_after_seconds, start_notifier
from bot.views.alerts import DIGEST_ICON
from bot.views.keyboards import Kind, decode
from core.alerting.book import AlertBook, AlertKind, Finding
from core.alerting.outbox import Outbox
from core.clock import ManualClock
from core.config import parse_config
from core.fleet import Fleet
from core.service import FleetService
from core.store.engines import database_for
from offline_botapi.server import OfflineBotAPI

OWNER, OTHER_OWNER = 1001, 1002
GROUP = -4001  # aliens: a basic group (can migrate)
FORUM = -1001234567890  # matrix: a forum with topics


@dataclass
class Rig:
    api: OfflineBotAPI
    clock: ManualClock
    service: FleetService
    outbox: Outbox
    book: AlertBook
    bot: Bot
    notifier: Notifier
    topics: dict[str, int]

    async def alert(self, agent_id: str, company: str = "aliens", code: str = "unknown_key") -> int:
        await self.book.raise_(
            Finding(
                AlertKind.AGENT_UNAUTHENTICATED,
                f"agent:{agent_id}",
                company,
                f"{agent_id} (role)",
                "signed by a key this key ring lacks",
                code,
            )
        )
        return max(a.id for a in await self.book.firing())

    async def settle(self, seconds: float = 31) -> None:
        """Let group_wait pass, decide, and drain whatever is due."""
        self.clock.advance(seconds)
        await self.book.flush()
        await self.notifier.drain()

    def texts(self, chat: int, thread: int | None = None) -> list[str]:
        return [m["text"] for m in self.api.messages(chat, thread_id=thread)]


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Rig]:
    api = OfflineBotAPI()
    api.add_user(OWNER, "Owner")
    api.add_user(OTHER_OWNER, "Second")
    api.add_group(GROUP, "Aliens", members=[OWNER])
    api.add_group(FORUM, "Matrix", members=[OWNER], forum=True)
    topics = {
        "alerts": api.create_topic(FORUM, "alerts"),
        "summaries": api.create_topic(FORUM, "s"),
    }
    data = config_data(tmp_path)
    data["telegram"] = {"owners": [OWNER, OTHER_OWNER]}
    data["companies"][0]["chat"] = GROUP
    data["companies"][1].update(chat=FORUM, topics=topics)
    config = parse_config(data, "test")
    async with database_for(config.storage) as db:
        service = FleetService(db, config, clock)
        await service.sync_config()
        outbox = Outbox(db, clock, config)
        book = AlertBook(db, clock, config, outbox)
        async with Bot(api.token, request=api.make_request()) as bot:
            notifier = Notifier(bot, outbox, book, clock)
            yield Rig(api, clock, service, outbox, book, bot, notifier, topics)


def alert_ids(texts: list[str]) -> Counter[int]:
    """Alert id -> messages that delivered it: an alert's own, or a digest listing it."""
    return Counter(int(i) for t in texts for i in carried(t))


def carried(text: str) -> list[str]:
    if text.startswith((DIGEST_ICON, "✅ <b>All")):
        return re.findall(r"#(\d+) ", text)
    return [m[1] for m in [re.search(r"#(\d+) ", text)] if m]


async def test_new_alert_edit_in_place_and_resolution(rig: Rig) -> None:
    alert_id = await rig.alert("ali-ceo")
    await rig.settle()
    [dm] = rig.api.messages(OWNER)
    assert dm["text"].startswith(f"🔑 #{alert_id} Agents unauthenticated · unknown_key")
    buttons = [b["callback_data"] for row in dm["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons == [
        f"v1:a:{alert_id}:ack",
        f"v1:a:{alert_id}:mute:1h",
        f"v1:a:{alert_id}:mute:4h",
        f"v1:a:{alert_id}:mute:24h",
        f"v1:a:{alert_id}:fix:rotate",
    ]
    press = decode(buttons[2])  # the bot's callback handler reads exactly this
    assert (press.kind, press.ref, press.verb, press.arg) == (
        Kind.ALERT,
        str(alert_id),
        "mute",
        "4h",
    )
    assert len(rig.api.messages(GROUP)) == 1 and rig.api.messages(FORUM, rig.topics["alerts"]) == []

    await rig.alert("ali-cto")
    await rig.settle(1)
    [edited] = rig.api.messages(OWNER)
    assert edited["message_id"] == dm["message_id"] and "ali-cto (role)" in edited["text"]
    assert len(rig.api.calls("sendMessage")) == 3  # two owners + one team chat, never again

    await rig.book.resolve(
        "agent_unauthenticated:agent:ali-ceo", "agent_unauthenticated:agent:ali-cto"
    )
    await rig.settle(1)
    [done] = rig.api.messages(GROUP)
    assert done["text"].startswith(f"✅ #{alert_id}") and "Resolved at" in done["text"]
    assert "reply_markup" not in done  # no buttons on a resolved alert
    assert len(rig.api.calls("sendMessage")) == 3
    assert await rig.outbox.counts() == {"sent": 9}


async def test_each_team_chat_sees_its_own_company(rig: Rig) -> None:
    await rig.alert("ali-ceo")
    await rig.alert("mat-ceo", "matrix")
    await rig.settle()
    [team] = rig.api.messages(FORUM, rig.topics["alerts"])
    assert "mat-ceo" in team["text"] and "ali-ceo" not in team["text"]
    assert "ali-ceo" in rig.texts(OWNER)[0] and "mat-ceo" in rig.texts(OWNER)[0]


async def test_not_modified_counts_as_done(rig: Rig) -> None:
    alert_id = await rig.alert("ali-ceo")
    await rig.settle()
    async with rig.outbox.db.write() as conn:  # an edit that changes nothing visible
        for chat in (str(OWNER), str(GROUP)):
            await rig.outbox.enqueue_edit_in(
                conn, alert_id, _r(chat), rig.clock.now(), may_send=False
            )
    report = await rig.notifier.drain()
    assert report.edited == 2 and report.dropped == 0
    assert (await rig.outbox.counts())["sent"] == 5


def _r(chat: str) -> Any:
    from core.alerting.outbox import Recipient

    return Recipient(chat)


async def test_429_storm_is_waited_out_and_nothing_doubles(rig: Rig) -> None:
    for n in range(5):
        await rig.alert(f"agent-{n}", code=f"code{n}")
    rig.api.inject_429(4, retry_after=7, methods=["sendMessage"])
    rig.clock.advance(31)
    await rig.book.flush()
    for _ in range(40):
        report = await rig.notifier.drain()
        if report.held_until is not None:
            calls = len(rig.api.sent_log)
            assert await rig.notifier.drain() == type(report)(held_until=report.held_until)
            assert len(rig.api.sent_log) == calls  # nothing is tried while held
            rig.clock.advance(report.held_until - rig.clock.now())
    assert rig.api.faults_served["429"] == 4
    for chat in (OWNER, OTHER_OWNER, GROUP):
        assert alert_ids(rig.texts(chat)) == Counter({n: 1 for n in range(1, 6)})


async def test_ten_minute_outage_full_of_429s_delivers_everything_once(rig: Rig) -> None:
    raised: list[int] = []
    rig.api.outage(True)  # five minutes unreachable, then five minutes of nothing but 429s
    for second in range(600):
        if second % 20 == 0:  # a new problem every 20 s throughout
            raised.append(await rig.alert(f"a{second}", code=f"c{second}"))
        if second == 300:
            rig.api.outage(False)
            rig.api.inject_429(10_000, retry_after=30)
        await rig.settle(1)
    rig.api.clear_faults()
    assert rig.api.faults_served["outage"] >= 5 and rig.api.faults_served["429"] >= 5
    assert rig.api.calls("sendMessage") == []
    for _ in range(400):  # the network is back: drain at whatever pace backoff allows
        await rig.settle(5)
    want = Counter(dict.fromkeys(raised, 1))
    assert len(want) == 30
    for chat in (OWNER, OTHER_OWNER, GROUP):
        assert alert_ids(rig.texts(chat)) == want
    # The backlog went as one digest per chat; the rows it carries are kept, marked.
    assert set(await rig.outbox.counts()) == {"sent", "coalesced"}


async def test_blocked_owner_is_skipped_not_retried_forever(rig: Rig) -> None:
    rig.api.block_bot(OWNER)
    await rig.alert("ali-ceo")
    await rig.settle()
    assert rig.api.messages(OWNER) == [] and len(rig.api.messages(OTHER_OWNER)) == 1
    assert await rig.outbox.undeliverable(str(OWNER))
    await rig.alert("ali-cto", code="expired")
    await rig.settle()
    assert len(rig.api.calls("sendMessage")) == 4  # the blocked chat was not even tried
    assert (await rig.outbox.counts())["dead"] == 2
    rig.api.block_bot(OWNER, False)  # people unblock; after a while the bot tries again
    rig.clock.advance(3600)
    await rig.alert("ali-qa-1", code="revoked")
    await rig.settle()
    assert len(rig.api.messages(OWNER)) == 1


async def test_group_migration_is_followed_and_remembered(rig: Rig) -> None:
    new_id = rig.api.migrate_group(GROUP)
    first = await rig.alert("ali-ceo")
    await rig.settle()
    [moved] = rig.api.messages(new_id)
    assert f"#{first} " in moved["text"]
    assert await rig.outbox.chat_for(str(GROUP)) == str(new_id)
    await rig.alert("ali-cto", code="expired")
    await rig.settle()
    assert len(rig.api.messages(new_id)) == 2
    migrated = [
        c for c in rig.api.calls("sendMessage") if c.params["chat_id"] in (GROUP, str(GROUP))
    ]
    assert migrated == []  # refused calls are not logged; none succeeded on the old id
    # Edits of the alert go to the message in the new chat.
    await rig.alert("ali-qa-1")
    await rig.settle(1)
    assert "ali-qa-1" in rig.api.messages(new_id)[0]["text"]


async def test_crash_between_send_and_mark_sends_nothing_twice(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    alert_id = await rig.alert("ali-ceo")
    rig.clock.advance(31)
    await rig.book.flush()

    async def crash(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed between send and mark")

    with monkeypatch.context() as m:
        m.setattr(rig.outbox, "sent", crash)
        with pytest.raises(SystemExit):
            await rig.notifier.drain()
    assert len(rig.api.messages(OWNER)) == 1  # Telegram got it; we never recorded it

    restarted = Notifier(rig.bot, rig.outbox, rig.book, rig.clock)
    assert await restarted.reconcile() == 1
    await restarted.drain()
    assert len(rig.api.messages(OWNER)) == 1 and len(rig.api.messages(OTHER_OWNER)) == 1
    assert len(rig.api.messages(GROUP)) == 1
    assert (await rig.outbox.counts())["in_doubt"] == 1
    # The in-doubt chat gets the alert again only as its reminder, which is a new message
    # by design; edits meanwhile go to the chats whose message is known.
    await rig.alert("ali-cto")
    rig.clock.advance(1)
    await rig.book.flush()
    await restarted.drain()
    assert "ali-cto" in rig.texts(OTHER_OWNER)[0] and "ali-cto" not in rig.texts(OWNER)[0]
    rig.clock.advance(4 * 3600)
    await rig.book.flush()
    await restarted.drain()
    assert alert_ids(rig.texts(OWNER)) == Counter({alert_id: 2})  # the reminder


async def test_a_digest_interrupted_mid_send_is_not_sent_again(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest keeps the outbox's guarantee: at most one message per row, the rows it
    carries are kept (coalesced), and a crash mid-send leaves it in doubt, not sent twice."""
    rig.api.outage(True)
    raised = [await rig.alert(f"a{n}", code=f"c{n}") for n in range(6)]
    for _ in range(12):
        await rig.settle(10)
    rig.api.outage(False)
    rig.clock.advance(60)

    async def crash(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed between send and mark")

    with monkeypatch.context() as m:
        m.setattr(rig.outbox, "sent", crash)
        with pytest.raises(SystemExit):
            await rig.notifier.drain()
    restarted = Notifier(rig.bot, rig.outbox, rig.book, rig.clock)
    assert await restarted.reconcile() == 1
    await restarted.drain()
    rows = await rig.outbox.rows()
    digests = Counter((r.chat, r.state) for r in rows if r.kind == "alert_digest")
    assert digests == {
        (str(OWNER), "in_doubt"): 1,
        (str(OTHER_OWNER), "sent"): 1,
        (str(GROUP), "sent"): 1,
    }
    assert Counter(r.state for r in rows if r.kind == "alert") == {"coalesced": 18}
    for chat in (OWNER, OTHER_OWNER, GROUP):
        assert alert_ids(rig.texts(chat)) == Counter(dict.fromkeys(raised, 1))
        assert len(rig.api.messages(chat)) == 1


async def test_crash_during_an_edit_redoes_the_edit(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    await rig.alert("ali-ceo")
    await rig.settle()
    await rig.alert("ali-cto")
    rig.clock.advance(1)
    await rig.book.flush()

    async def crash(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed")

    with monkeypatch.context() as m:
        m.setattr(rig.outbox, "sent", crash)
        with pytest.raises(SystemExit):
            await rig.notifier.drain()
    restarted = Notifier(rig.bot, rig.outbox, rig.book, rig.clock)
    assert await restarted.reconcile() == 0  # edits are redone, not doubted
    await restarted.drain()
    assert all("ali-cto" in t for c in (OWNER, OTHER_OWNER, GROUP) for t in rig.texts(c))
    assert len(rig.api.calls("sendMessage")) == 3
    assert set(await rig.outbox.counts()) == {"sent"}


async def test_deleted_message_is_sent_afresh(rig: Rig) -> None:
    await rig.alert("ali-ceo")
    await rig.settle()
    [dm] = rig.api.messages(OWNER)
    await rig.bot.delete_message(OWNER, dm["message_id"])
    await rig.alert("ali-cto")
    await rig.settle(1)
    await rig.notifier.drain()
    [fresh] = rig.api.messages(OWNER)
    assert fresh["message_id"] != dm["message_id"] and "ali-cto" in fresh["text"]


async def test_summaries_go_to_the_team_topic(rig: Rig) -> None:
    agent = await rig.service.agent("mat-cto")
    issue = await rig.service.file_issue(title="x", assignee="mat-cto", actor="t")
    summary_id = await rig.service.post_summary(agent, "Shipped <b>v2</b> & docs", issue.id)
    await rig.outbox.enqueue_summary(summary_id, "matrix")
    await rig.outbox.enqueue_summary(summary_id, "matrix")  # a repeat is deduplicated
    await rig.notifier.drain()
    [msg] = rig.api.messages(FORUM, rig.topics["summaries"])
    assert msg["text"] == "Mat-Cto (cto) · MAT-1: Shipped <b>v2</b> & docs"
    assert await rig.outbox.enqueue_text(OWNER, "a & b", "digest:1") is not None
    assert await rig.outbox.enqueue_text(OWNER, "a & b", "digest:1") is None
    await rig.notifier.drain()
    assert rig.texts(OWNER) == ["a & b"]


# Shaped like the real things: a run token (a JWT), a bearer header value, a bot token.
JWT = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGktY3RvIn0.c2lnbmF0dXJlLXZhbHVl"
BEARER = "Bearer abcDEF0123456789xyz"
BOT_TOKEN = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"


async def test_secrets_in_an_agent_summary_are_masked_in_the_team_chat(rig: Rig) -> None:
    """Regression (issue 11, item 7): a summary was relayed as the agent wrote it, so a model
    that pasted its run token, a header or a bot token put it in front of the whole team."""
    agent = await rig.service.agent("ali-cto")
    body = (
        f"Deployed <v2> & checked it. My token {JWT} worked; the hook wants "
        f"Authorization: {BEARER}, and the bot is {BOT_TOKEN}. Next: docs."
    )
    await rig.outbox.enqueue_summary(await rig.service.post_summary(agent, body), "aliens")
    await rig.notifier.drain()
    [msg] = rig.api.messages(GROUP)
    assert msg["text"] == (
        "Ali-Cto (cto): Deployed <v2> & checked it. My token [redacted] worked; the hook "
        "wants Authorization: [redacted], and the bot is [redacted]. Next: docs."
    )
    sent = " ".join(str(c.params) for c in rig.api.sent_log)
    for secret in (JWT, BEARER.split()[1], BOT_TOKEN.split(":")[1]):
        assert secret not in sent


def test_retry_after_is_read_without_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert retry_after_seconds(RetryAfter(timedelta(seconds=7))) == 7.0
    monkeypatch.delenv("PTB_TIMEDELTA", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy = RetryAfter(5)  # PTB itself warns while building it without PTB_TIMEDELTA
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert retry_after_seconds(legacy) == 5.0


async def test_start_notifier_drains_a_fleet_in_the_background(
    tmp_path: Path, clock: ManualClock
) -> None:
    api = OfflineBotAPI()
    api.add_user(OWNER, "Owner")
    data = config_data(tmp_path)
    data["telegram"] = {"owners": [OWNER]}
    config = parse_config(data, "test")
    make_auth(config, clock)
    async with (
        Fleet(config, {}, clock, serve_api=False, periodic=False) as fleet,
        Bot(api.token, request=api.make_request()) as bot,
    ):
        stop = await start_notifier(SimpleNamespace(bot=bot), fleet)
        try:
            await fleet.monitors.run()  # nothing wrong yet
            await fleet.alerts.raise_(
                Finding(
                    AlertKind.AGENT_STUCK,
                    "agent:ali-cto",
                    "aliens",
                    "Ali-Cto (cto)",
                    "run on ALI-1 has reported no progress since 00:00 UTC",
                    "no_progress",
                    cause_key="",
                )
            )
            clock.advance(30)
            await fleet.alerts.flush()  # the notifier is woken by the new outbox rows
            message = await api.wait_for_message(OWNER, timeout=5)
            assert "Runs stuck" in message["text"] and "ALI-1" in message["text"]
        finally:
            await stop()
