"""The offline Bot API, driven by a real python-telegram-bot Application."""

from __future__ import annotations

import asyncio
import datetime as dtm
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatID, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from offline_botapi.parse_mode import HTMLParseError, parse_html, strip_text
from offline_botapi.server import OfflineBotAPI

ALICE = 1001
BOB = 1002
GROUP = -4001
FORUM = -1001234567890
HTML_GREETING = "<b>Hello</b>, <i>friend</i> &amp; <code>co</code>"
App = Application[Any, Any, Any, Any, Any, Any]
KEYBOARD = InlineKeyboardMarkup([[InlineKeyboardButton("Ping", callback_data="ping")]])


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(
        HTML_GREETING, parse_mode=ParseMode.HTML, reply_markup=KEYBOARD
    )


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer("pong")
    await query.edit_message_text(f"Pressed <b>{query.data}</b>", parse_mode=ParseMode.HTML)


@pytest.fixture
def api() -> OfflineBotAPI:
    api = OfflineBotAPI()
    api.add_user(ALICE, "Alice", "alice")
    api.add_user(BOB, "Bob", started=False)
    api.add_group(GROUP, "Ops", members=[ALICE, BOB])
    api.add_group(FORUM, "Fleet", members=[ALICE], forum=True)
    return api


@pytest.fixture
async def app(api: OfflineBotAPI) -> AsyncIterator[App]:
    application = api.application_builder().build()
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CallbackQueryHandler(on_button))
    async with application:
        assert application.updater is not None
        await application.updater.start_polling(timeout=dtm.timedelta(seconds=10))
        await application.start()
        try:
            yield application
        finally:
            await application.updater.stop()
            await application.stop()


@pytest.fixture
async def bot(api: OfflineBotAPI) -> AsyncIterator[Bot]:
    async with Bot(
        api.token, request=api.make_request(), get_updates_request=api.make_request()
    ) as bot:
        yield bot


# ---------------------------------------------------------------- round trips


async def test_start_round_trip_via_long_polling(api: OfflineBotAPI, app: App) -> None:
    sent = await api.send_text(ALICE, "/start")
    assert sent["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]

    reply = await api.wait_for_message(ALICE)
    assert reply["text"] == "Hello, friend & co"
    assert [(e["type"], e["offset"], e["length"]) for e in reply["entities"]] == [
        ("bold", 0, 5),
        ("italic", 7, 6),
        ("code", 16, 2),
    ]
    assert reply["from"]["username"] == "fleetbot_test_bot"
    assert reply["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "ping"
    assert api.source_text(ALICE, reply["message_id"]) == HTML_GREETING
    assert [c.method for c in api.sent_log][:2] == ["getMe", "deleteWebhook"]


async def test_start_with_botname_in_group(api: OfflineBotAPI, app: App) -> None:
    await api.send_text(ALICE, "/start@some_other_bot", chat_id=GROUP)
    sent = await api.send_text(ALICE, "/start@fleetbot_test_bot now", chat_id=GROUP)
    assert sent["entities"][0]["length"] == len("/start@fleetbot_test_bot")

    reply = await api.wait_for_message(GROUP)
    # PTB quotes the command in groups; the server resolved the reply target.
    assert reply["reply_to_message"]["message_id"] == sent["message_id"]
    assert len(api.messages(GROUP)) == 1  # the other bot's command was ignored


async def test_forum_topic_reply_stays_in_thread(api: OfflineBotAPI, app: App) -> None:
    thread = api.create_topic(FORUM, "incidents")
    await api.send_text(ALICE, "/start", chat_id=FORUM, thread_id=thread)
    reply = await api.wait_for_message(FORUM)
    assert reply["message_thread_id"] == thread
    assert api.messages(FORUM, thread_id=thread) == [reply]


async def test_button_press_edits_in_place(api: OfflineBotAPI, app: App) -> None:
    await api.send_text(ALICE, "/start")
    menu = await api.wait_for_message(ALICE)
    with pytest.raises(LookupError):
        await api.press_button(ALICE, ALICE, menu["message_id"], "pong")

    query_id = await api.press_button(ALICE, ALICE, menu["message_id"], "ping")
    await api.wait_for_call("editMessageText")
    [edited] = api.messages(ALICE)
    assert edited["message_id"] == menu["message_id"]
    assert edited["text"] == "Pressed ping"
    assert "reply_markup" not in edited  # an edit without markup drops the keyboard
    answer = await api.wait_for_call("answerCallbackQuery")
    assert answer.params["callback_query_id"] == query_id
    assert api.callback_answers[0]["text"] == "pong"

    # The query was answered once; a second answer is rejected like on Telegram.
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await app.bot.answer_callback_query(query_id)


# ---------------------------------------------------------------- strictness


@pytest.mark.parametrize(
    ("text", "parse_mode", "error"),
    [
        ("x" * 4097, None, "message is too long"),
        ("😀" * 2049, None, "message is too long"),  # 4098 UTF-16 code units
        ("   \n ", None, "message text is empty"),
        ("<b></b>", ParseMode.HTML, "message text is empty"),
        ("<b>unclosed", ParseMode.HTML, 'find end tag corresponding to start tag "b"'),
        ("a < b", ParseMode.HTML, 'unsupported start tag "" at byte offset 2'),
        ("<div>x</div>", ParseMode.HTML, 'unsupported start tag "div"'),
        ("<b><i>x</b></i>", ParseMode.HTML, 'expected "</i>", found "</b>"'),
        ('<span class="x">y</span>', ParseMode.HTML, "must have class"),
        ("x</b>", ParseMode.HTML, "unexpected end tag"),
        ("AT&T", ParseMode.HTML, 'unescaped "&"'),
        ("hi", "HTMLX", "unsupported parse_mode"),
    ],
)
async def test_send_message_rejections(
    api: OfflineBotAPI, bot: Bot, text: str, parse_mode: str | None, error: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(ALICE, text, parse_mode=parse_mode)
    assert error.lower() in caught.value.message.lower()
    assert api.messages(ALICE) == []


async def test_length_is_measured_after_entity_parsing(api: OfflineBotAPI, bot: Bot) -> None:
    html = "<b>" + "&lt;" * 4096 + "</b>"
    message = await bot.send_message(ALICE, html, parse_mode=ParseMode.HTML)
    assert message.text == "<" * 4096
    await bot.send_message(ALICE, "😀" * 2048)


async def test_accepted_html_subset() -> None:
    parsed = strip_text(
        parse_html(
            '<pre><code class="language-python">x = 1</code></pre>'
            '<a href="https://example.com">l</a><tg-spoiler>s</tg-spoiler>'
            "<blockquote expandable>q</blockquote>&#x1F600;&quot;"
        )
    )
    assert parsed.text == 'x = 1lsq😀"'
    kinds = {e["type"]: e for e in parsed.entities}
    assert kinds["pre"]["language"] == "python"
    assert kinds["text_link"]["url"] == "https://example.com"
    assert {"spoiler", "expandable_blockquote"} <= kinds.keys()
    assert "code" not in kinds
    assert parse_html("AT&T", strict_ampersand=False).text == "AT&T"
    with pytest.raises(HTMLParseError, match="Invalid custom emoji"):
        parse_html("<tg-emoji>x</tg-emoji>")


@pytest.mark.parametrize(
    ("button", "error"),
    [
        (InlineKeyboardButton("x", callback_data="d" * 65), "button_data_invalid"),
        (InlineKeyboardButton("x", callback_data="é" * 33), "button_data_invalid"),  # 66 bytes
        (InlineKeyboardButton("x", url="ftp://example.com"), "button_url_invalid"),
    ],
)
async def test_keyboard_rejections(bot: Bot, button: InlineKeyboardButton, error: str) -> None:
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(ALICE, "menu", reply_markup=InlineKeyboardMarkup([[button]]))
    assert error in caught.value.message.lower()


async def test_keyboard_raw_rejections_and_limits(bot: Bot) -> None:
    await bot.send_message(
        ALICE,
        "ok",
        reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="é" * 32)]]),
    )
    for markup, error in [
        ({"inline_keyboard": [[{"text": "no action"}]]}, "text buttons are unallowed"),
        (
            {"inline_keyboard": [[{"text": "x", "callback_data": "a", "url": "https://a.b"}]]},
            "only one",
        ),
        ({"inline_keyboard": "nope"}, "can't parse reply keyboard markup"),
    ]:
        with pytest.raises(BadRequest) as caught:
            await bot.send_message(ALICE, "menu", api_kwargs={"reply_markup": markup})
        assert error in caught.value.message.lower()


async def test_chat_thread_and_edit_rejections(api: OfflineBotAPI, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(-999, "hi")
    with pytest.raises(Forbidden, match="can't initiate conversation"):
        await bot.send_message(BOB, "hi")  # Bob never pressed Start

    thread = api.create_topic(FORUM, "deploys")
    await bot.send_message(FORUM, "in topic", message_thread_id=thread)
    for chat_id, thread_id in [(FORUM, 999), (GROUP, thread)]:
        with pytest.raises(BadRequest, match=r"(?i)message thread not found"):
            await bot.send_message(chat_id, "hi", message_thread_id=thread_id)

    sent = await bot.send_message(ALICE, "<b>same</b>", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r"(?i)message is not modified: specified new message"):
        await bot.edit_message_text("<b>same</b>", ALICE, sent.message_id, parse_mode="HTML")
    # Different entities are a modification even when the plain text is equal.
    await bot.edit_message_text("same", ALICE, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("new", ALICE, 12345)
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query("42")


async def test_commands_are_validated_and_stored(api: OfflineBotAPI, bot: Bot) -> None:
    await bot.set_my_commands([("start", "Open the desk"), ("agents", "List agents")])
    assert api.commands() == [
        {"command": "start", "description": "Open the desk"},
        {"command": "agents", "description": "List agents"},
    ]
    assert [c.command for c in await bot.get_my_commands()] == ["start", "agents"]
    for commands in ([("Start", "x")], [("a" * 33, "x")], [("ok", "")], [("ok", "d" * 257)]):
        with pytest.raises(BadRequest):
            await bot.set_my_commands(commands)
    with pytest.raises(BadRequest, match=r"(?i)bot_commands_too_much"):
        await bot.set_my_commands([(f"c{i}", "x") for i in range(101)])
    await bot.delete_my_commands()
    assert api.commands() == []


# ---------------------------------------------------------------- failures


async def test_429_raises_retry_after(
    api: OfflineBotAPI, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without PTB_TIMEDELTA, RetryAfter.retry_after emits a PTBDeprecationWarning.
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    api.inject_429(1, retry_after=7, methods=["sendMessage"])
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(ALICE, "hi")
    assert caught.value.retry_after == dtm.timedelta(seconds=7)
    await bot.send_message(ALICE, "hi again")
    assert api.faults_served["429"] == 1
    assert [c.method for c in api.calls("sendMessage")] == ["sendMessage"]


async def test_5xx_and_blocked_user(api: OfflineBotAPI, bot: Bot) -> None:
    api.inject_5xx(1, status=502)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(ALICE, "hi")
    api.block_bot(ALICE)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(ALICE, "hi")
    assert api.faults_served["5xx"] == 1


async def test_outage_is_a_network_error(api: OfflineBotAPI, bot: Bot) -> None:
    with api.outage():
        with pytest.raises(NetworkError, match="ConnectError"):
            await bot.send_message(ALICE, "hi")
        with pytest.raises(NetworkError):
            await bot.get_updates()
    await bot.send_message(ALICE, "back")
    assert api.faults_served["outage"] == 2


async def test_group_migration_raises_chat_migrated(api: OfflineBotAPI, bot: Bot) -> None:
    new_id = api.migrate_group(GROUP)
    with pytest.raises(ChatMigrated) as caught:
        await bot.send_message(GROUP, "hi")
    assert caught.value.new_chat_id == new_id
    await bot.send_message(new_id, "hi")
    updates = await bot.get_updates()
    assert updates[0].message is not None
    assert updates[0].message.migrate_to_chat_id == new_id


async def test_a_user_edit_arrives_as_an_edited_message(api: OfflineBotAPI, bot: Bot) -> None:
    sent = await api.send_text(ALICE, "/issue qa Check the logs", chat_id=GROUP)
    edited = await api.edit_text(ALICE, GROUP, sent["message_id"], "/issue qa Check the disk")
    assert edited["edit_date"] >= edited["date"] == sent["date"]
    first, second = await bot.get_updates()
    assert first.message is not None and first.edited_message is None
    message = second.edited_message
    assert message is not None and second.message is None
    assert message.message_id == sent["message_id"] and message.chat.id == GROUP
    assert message.text == "/issue qa Check the disk" and message.edit_date is not None
    assert message.entities[0].type == "bot_command"  # still a command, as on Telegram
    assert message.from_user is not None and message.from_user.id == ALICE

    # Only the author edits, only text, and only to something new.
    with pytest.raises(LookupError):
        await api.edit_text(BOB, GROUP, sent["message_id"], "mine now")
    with pytest.raises(ValueError, match="MESSAGE_NOT_MODIFIED"):
        await api.edit_text(ALICE, GROUP, sent["message_id"], "/issue qa Check the disk")
    reply = await bot.send_message(GROUP, "a bot message")
    with pytest.raises(LookupError):
        await api.edit_text(ALICE, GROUP, reply.message_id, "edited by a user")


async def test_an_anonymous_admin_posts_as_the_group(api: OfflineBotAPI, bot: Bot) -> None:
    with pytest.raises(ValueError, match="not a supergroup"):
        api.set_anonymous_admin(GROUP, ALICE)  # Telegram upgrades the group first
    api.add_group(-1009876543210, "Ops 2", members=[ALICE, BOB])
    with pytest.raises(ValueError, match="not the creator"):
        api.set_anonymous_admin(-1009876543210, BOB)
    api.set_anonymous_admin(-1009876543210, ALICE)
    await api.send_text(ALICE, "/whoami", chat_id=-1009876543210)
    await api.send_text(ALICE, "/whoami")  # in private, Alice is herself
    anonymous, private = await bot.get_updates()
    message = anonymous.message
    assert message is not None and message.from_user is not None
    assert message.from_user.id == ChatID.ANONYMOUS_ADMIN and message.from_user.is_bot
    assert message.sender_chat is not None and message.sender_chat.id == -1009876543210
    assert private.effective_user is not None and private.effective_user.id == ALICE
    member = await bot.get_chat_member(-1009876543210, ALICE)
    assert member.status == "creator" and getattr(member, "is_anonymous", None) is True


async def test_wrong_token_and_unknown_method(api: OfflineBotAPI) -> None:
    with pytest.raises(InvalidToken, match="rejected by the server"):
        async with Bot("42:nope", request=api.make_request()):
            pass
    async with Bot(api.token, request=api.make_request()) as bot:
        with pytest.raises(EndPointNotFound):
            await bot.do_api_request("noSuchMethod")


# ---------------------------------------------------------------- long polling


async def test_get_updates_waits_for_timeout_then_returns_early(
    api: OfflineBotAPI, bot: Bot
) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=dtm.timedelta(seconds=0.3)) == ()
    assert time.monotonic() - started >= 0.3

    poll = asyncio.create_task(bot.get_updates(timeout=dtm.timedelta(seconds=5)))
    await asyncio.sleep(0.05)
    assert not poll.done()
    started = time.monotonic()
    await api.send_text(ALICE, "hello")
    updates = await asyncio.wait_for(poll, 1)
    assert time.monotonic() - started < 0.5
    assert updates[0].message is not None and updates[0].message.text == "hello"

    # Confirming with offset forgets the update; an offset-less call returns it again.
    assert len(await bot.get_updates()) == 1
    assert await bot.get_updates(offset=updates[0].update_id + 1) == ()
    assert api.pending_updates() == []


async def test_second_poller_terminates_first(api: OfflineBotAPI, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=dtm.timedelta(seconds=5)))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(bot.get_updates(timeout=dtm.timedelta(seconds=0.1)))
    with pytest.raises(Conflict, match="terminated by other getUpdates"):
        await first
    assert await second == ()


# ---------------------------------------------------------------- served over HTTP


async def test_served_on_loopback(api: OfflineBotAPI) -> None:
    async with api.serve() as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        async with Bot(api.token, base_url=base_url) as bot:
            message = await bot.send_message(ALICE, "<i>over http</i>", parse_mode="HTML")
            assert message.text == "over http"
            with api.outage(), pytest.raises(NetworkError):
                await bot.get_me()
            async with httpx.AsyncClient(trust_env=False) as client:
                answer = await client.post(f"{base_url}{api.token}/sendMessage", json={})
            assert answer.status_code == 400
            assert answer.json()["description"] == "Bad Request: chat_id is empty"
