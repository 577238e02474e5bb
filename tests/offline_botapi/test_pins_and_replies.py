"""pinChatMessage / unpinChatMessage and users' replies on the offline Bot API, as strict as
Telegram: a bot pins in private chats, in groups only as an admin; a pin leaves a service
message; a user's reply carries the message it answers, one level deep."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from telegram import Bot
from telegram.error import BadRequest

from offline_botapi.server import OfflineBotAPI

ALICE = 1001
GROUP = -4001


@pytest.fixture
def api() -> OfflineBotAPI:
    api = OfflineBotAPI()
    api.add_user(ALICE, "Alice", "alice")
    api.add_group(GROUP, "Ops", members=[ALICE])
    return api


@pytest.fixture
async def bot(api: OfflineBotAPI) -> AsyncIterator[Bot]:
    async with Bot(
        api.token, request=api.make_request(), get_updates_request=api.make_request()
    ) as bot:
        yield bot


async def test_pin_in_private_edit_and_unpin(api: OfflineBotAPI, bot: Bot) -> None:
    card = await bot.send_message(ALICE, "waiting on you: 1")
    assert await bot.pin_chat_message(ALICE, card.message_id, disable_notification=True)
    (pinned,) = api.pinned(ALICE)
    assert pinned["text"] == "waiting on you: 1"
    chat = await bot.get_chat(ALICE)
    assert chat.pinned_message is not None and chat.pinned_message.message_id == card.message_id
    # The pin leaves a service message in the chat, not a message "sent" by the bot.
    service = [m for m in api._chats[ALICE].messages.values() if "pinned_message" in m]
    assert [m["pinned_message"]["message_id"] for m in service] == [card.message_id]
    assert [m["message_id"] for m in api.messages(ALICE)] == [card.message_id]
    # Editing a pinned message keeps it pinned, and what is pinned reads as edited.
    await bot.edit_message_text(
        "waiting on you: nothing", chat_id=ALICE, message_id=card.message_id
    )
    assert api.pinned(ALICE)[0]["text"] == "waiting on you: nothing"
    with pytest.raises(BadRequest, match="Message to pin not found"):
        await bot.pin_chat_message(ALICE, 999)
    with pytest.raises(BadRequest, match="Message to pin not found"):
        await bot.pin_chat_message(ALICE, service[0]["message_id"])
    assert await bot.unpin_chat_message(ALICE, card.message_id)
    assert api.pinned(ALICE) == []
    assert await bot.unpin_chat_message(ALICE)  # nothing pinned: still fine, as on Telegram


async def test_pinning_in_a_group_needs_admin_rights(api: OfflineBotAPI, bot: Bot) -> None:
    note = await bot.send_message(GROUP, "team note")
    with pytest.raises(BadRequest, match="Not enough rights to manage pinned messages"):
        await bot.pin_chat_message(GROUP, note.message_id)
    api.set_bot_admin(GROUP)
    assert await bot.pin_chat_message(GROUP, note.message_id)
    assert [m["message_id"] for m in api.pinned(GROUP)] == [note.message_id]


async def test_a_user_reply_carries_the_message_it_answers(api: OfflineBotAPI, bot: Bot) -> None:
    card = await bot.send_message(GROUP, "Q1: deploy?")
    first = await api.send_text(ALICE, "yes", chat_id=GROUP, reply_to=card.message_id)
    second = await api.send_text(ALICE, "really", chat_id=GROUP, reply_to=first["message_id"])
    one, two = await bot.get_updates()
    assert one.message is not None and one.message.reply_to_message is not None
    assert one.message.reply_to_message.message_id == card.message_id
    assert one.message.reply_to_message.from_user is not None
    assert one.message.reply_to_message.from_user.id == bot.id
    nested = second["reply_to_message"]
    assert nested["message_id"] == first["message_id"] and "reply_to_message" not in nested
    assert two.message is not None and two.message.text == "really"
    with pytest.raises(ValueError, match="no message 999"):
        await api.send_text(ALICE, "to nothing", chat_id=GROUP, reply_to=999)
