"""The Bot API methods of the offline server: dispatch, Telegram's checks, and handlers.

:class:`BotApiMethods` routes one call (``/bot<token>/<method>``) to its handler after
the fault checks, and implements each supported method (getUpdates, sendMessage,
editMessageText, pinChatMessage, answerCallbackQuery, setMyCommands...) on top of
:class:`~offline_botapi.state.OfflineState`, answering with Telegram's own error texts.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import time
from collections.abc import Awaitable, Callable
from functools import cached_property
from http import HTTPStatus
from typing import Any

from offline_botapi.parse_mode import utf16_len
from offline_botapi.state import ApiCall, Chat, OfflineState
from offline_botapi.wire import (
    JSON,
    MAX_CALLBACK_ANSWER,
    ApiError,
    Params,
    as_bool,
    as_float,
    as_int,
    as_json,
    bad_request,
    decode_params,
    error_answer,
    message_text,
    reply_markup,
)

Handler = Callable[[Params], Awaitable[Any]]

_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# Update types Telegram withholds unless they are asked for in allowed_updates.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"


class BotApiMethods(OfflineState):
    """Dispatch and the Bot API method handlers, over the offline server's state."""

    @cached_property
    def _handlers(self) -> dict[str, Handler]:
        # Lower-case method names: Telegram matches them case-insensitively.
        return {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "deletemessage": self._delete_message,
            "pinchatmessage": self._pin_chat_message,
            "unpinchatmessage": self._unpin_chat_message,
            "answercallbackquery": self._answer_callback_query,
            "getchat": self._get_chat,
            "getchatmember": self._get_chat_member,
            "sendchataction": self._send_chat_action,
            "close": self._ok,
            "logout": self._ok,
        }

    async def _handle(
        self, http_method: str, path: str, content_type: str, body: bytes, query: str
    ) -> tuple[int, JSON]:
        """Route one request to its method after the outage and fault checks."""
        parts = path.rstrip("/").split("/")
        if len(parts) < 2 or not parts[-2].startswith("bot"):
            return 404, error_answer(404, "Not Found")
        if parts[-2][3:] != self.token:
            return 401, error_answer(401, "Unauthorized")
        name = parts[-1]
        handler = self._handlers.get(name.lower())
        if handler is None:
            return 404, error_answer(404, "Not Found")
        self._check_outage(name.lower())
        fault = next((f for f in self._faults if f.applies(name.lower())), None)
        if fault is not None:
            fault.remaining -= 1
            self.faults_served[fault.kind] += 1
            if fault.kind == "429":
                description = f"Too Many Requests: retry after {fault.retry_after}"
                params = {"retry_after": fault.retry_after}
                return 429, error_answer(429, description, params)
            return fault.status, error_answer(fault.status, HTTPStatus(fault.status).phrase)
        try:
            params = decode_params(content_type, body, query)
            result = await handler(params)
        except ApiError as err:
            return err.code, error_answer(err.code, err.description, err.parameters)
        self.sent_log.append(ApiCall(name, params, copy.deepcopy(result), self._clock()))
        self._notify()
        return 200, {"ok": True, "result": result}

    def _resolve_chat(self, params: Params, *, sending: bool) -> Chat:
        """Find the target chat and apply Telegram's access rules."""
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise bad_request("chat_id is empty")
        chat: Chat | None = None
        if isinstance(raw, str) and raw.startswith("@"):
            chat = next((c for c in self._chats.values() if c.username == raw[1:]), None)
        else:
            chat_id = as_int(raw, "chat not found")
            chat = self._chats.get(chat_id)
            user = self._users.get(chat_id)
            if chat is None and user is not None and sending:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        if chat is None:
            raise bad_request("chat not found")
        if chat.migrated_to is not None:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": chat.migrated_to},
            )
        if chat.user is not None and sending:
            if chat.user.blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            if not chat.user.started:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        if not chat.bot_member:
            kind = "supergroup" if chat.type == "supergroup" else "group"
            raise ApiError(403, f"Forbidden: bot was kicked from the {kind} chat")
        return chat

    def _thread(self, chat: Chat, params: Params) -> int | None:
        raw = params.get("message_thread_id")
        if raw is None:
            return None
        thread_id = as_int(raw, "message thread not found")
        if not chat.is_forum or thread_id not in chat.topics:
            raise bad_request("message thread not found")
        return thread_id

    def _own_message(self, chat: Chat, params: Params, missing: str) -> JSON:
        if params.get("inline_message_id") is not None:
            raise bad_request("inline messages are not supported by the offline API")
        raw = params.get("message_id")
        if raw is None:
            raise bad_request("message identifier is not specified")
        message = chat.messages.get(as_int(raw, missing))
        if message is None:
            raise bad_request(missing)
        return message

    async def _ok(self, params: Params) -> bool:
        return True

    async def _get_me(self, params: Params) -> JSON:
        return copy.deepcopy(self.bot_user)

    async def _get_updates(self, params: Params) -> list[JSON]:
        """Long polling: return pending updates at once, else wait up to ``timeout`` s."""
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = as_int(params.get("offset", 0), "invalid offset")
        limit = min(max(as_int(params.get("limit", 100), "invalid limit"), 1), 100)
        # Fractions are accepted (PTB sends them for sub-second timedeltas).
        timeout = max(as_float(params.get("timeout", 0), "invalid timeout"), 0.0)
        allowed = params.get("allowed_updates")
        if allowed is not None:
            self._allowed_updates = list(as_json(allowed, "can't parse allowed_updates")) or None
        if offset < 0:
            del self._updates[:offset]
        elif offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        # A newer getUpdates terminates the older one, as on Telegram.
        self._poll_generation += 1
        generation, release = self._poll_generation, self._poll_release
        self._notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            ready = [u for u in self._updates if self._is_allowed(u)][:limit]
            if ready:
                return copy.deepcopy(ready)
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            remaining = deadline - loop.time()
            if remaining <= 0 or release != self._poll_release:
                return []
            self._check_outage("getupdates")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    def _is_allowed(self, update: JSON) -> bool:
        kind = next(k for k in update if k != "update_id")
        if self._allowed_updates is None:
            return kind not in _OPT_IN_UPDATES
        return kind in self._allowed_updates

    async def _set_webhook(self, params: Params) -> bool:
        url = str(params.get("url") or "")
        if not url:
            return await self._delete_webhook(params)
        if not url.startswith("https://"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if as_bool(params.get("drop_pending_updates")):
            self._updates.clear()
        self.webhook = {"url": url, "secret_token": params.get("secret_token")}
        return True

    async def _delete_webhook(self, params: Params) -> bool:
        if as_bool(params.get("drop_pending_updates")):
            self._updates.clear()
        self.webhook = None
        return True

    async def _get_webhook_info(self, params: Params) -> JSON:
        info: JSON = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self._allowed_updates is not None:
            info["allowed_updates"] = list(self._allowed_updates)
        return info

    async def _set_my_commands(self, params: Params) -> bool:
        commands = as_json(params.get("commands"), "can't parse commands JSON object")
        if not isinstance(commands, list):
            raise bad_request("commands must be an array")
        if len(commands) > 100:
            raise bad_request("BOT_COMMANDS_TOO_MUCH")
        clean: list[JSON] = []
        for item in commands:
            command = item.get("command") if isinstance(item, dict) else None
            description = item.get("description") if isinstance(item, dict) else None
            if not isinstance(command, str) or not _COMMAND_RE.match(command):
                raise bad_request("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": command, "description": description})
        key = self._scope_key(as_json(params.get("scope"), "can't parse scope"), _lang(params))
        if clean:
            self._commands[key] = clean
        else:
            self._commands.pop(key, None)
        return True

    async def _get_my_commands(self, params: Params) -> list[JSON]:
        scope = as_json(params.get("scope"), "can't parse scope")
        return copy.deepcopy(self._commands.get(self._scope_key(scope, _lang(params)), []))

    async def _delete_my_commands(self, params: Params) -> bool:
        scope = as_json(params.get("scope"), "can't parse scope")
        self._commands.pop(self._scope_key(scope, _lang(params)), None)
        return True

    async def _send_message(self, params: Params) -> JSON:
        chat = self._resolve_chat(params, sending=True)
        thread_id = self._thread(chat, params)
        parsed, source = message_text(params, strict_ampersand=self.strict_ampersand)
        markup = reply_markup(params, inline_only=False)
        content: JSON = {"text": parsed.text}
        if parsed.entities:
            content["entities"] = parsed.entities
        reply = as_json(params.get("reply_parameters"), "can't parse reply parameters")
        if isinstance(reply, dict) and "message_id" in reply:
            target = chat.messages.get(as_int(reply["message_id"], "bad reply"))
            if target is not None:
                content["reply_to_message"] = copy.deepcopy(target)
            elif not as_bool(reply.get("allow_sending_without_reply")):
                raise bad_request("message to be replied not found")
        if markup is not None and "inline_keyboard" in markup:
            content["reply_markup"] = markup  # Telegram echoes only inline keyboards
        message = self._new_message(chat, self._bot_sender(), thread_id, content)
        chat.sources[message["message_id"]] = source
        self._outbox.append((chat.id, copy.deepcopy(message)))
        return copy.deepcopy(message)

    def _editable(self, params: Params) -> tuple[Chat, JSON]:
        """The chat and the bot's own message that an edit names, or Telegram's refusal."""
        chat = self._resolve_chat(params, sending=False)
        message = self._own_message(chat, params, "message to edit not found")
        if message["from"]["id"] != self.bot_user["id"]:
            raise bad_request("message can't be edited")
        return chat, message

    async def _edit_message_text(self, params: Params) -> JSON:
        chat, message = self._editable(params)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        parsed, source = message_text(params, strict_ampersand=self.strict_ampersand)
        markup = reply_markup(params, inline_only=True)
        # Telegram drops the keyboard when an edit omits reply_markup.
        same_text = (message["text"], message.get("entities", [])) == (
            parsed.text,
            parsed.entities,
        )
        if same_text and message.get("reply_markup") == markup:
            raise bad_request(_NOT_MODIFIED)
        message["text"] = parsed.text
        _set_or_drop(message, "entities", parsed.entities or None)
        _set_or_drop(message, "reply_markup", markup)
        message["edit_date"] = int(self._clock())
        chat.sources[message["message_id"]] = source
        return copy.deepcopy(message)

    async def _edit_message_reply_markup(self, params: Params) -> JSON:
        _, message = self._editable(params)
        markup = reply_markup(params, inline_only=True)
        if message.get("reply_markup") == markup:
            raise bad_request(_NOT_MODIFIED)
        _set_or_drop(message, "reply_markup", markup)
        message["edit_date"] = int(self._clock())
        return copy.deepcopy(message)

    async def _delete_message(self, params: Params) -> bool:
        chat = self._resolve_chat(params, sending=False)
        message = self._own_message(chat, params, "message to delete not found")
        # Without admin rights a bot may delete only its own messages outside private chats.
        if message["from"]["id"] != self.bot_user["id"] and chat.type != "private":
            raise bad_request("message can't be deleted")
        del chat.messages[message["message_id"]]
        chat.sources.pop(message["message_id"], None)
        return True

    def _check_pin_rights(self, chat: Chat) -> None:
        # In private chats a bot may pin; in groups only as an admin with can_pin_messages.
        if chat.user is None and not chat.bot_admin:
            raise bad_request("not enough rights to manage pinned messages in the chat")

    async def _pin_chat_message(self, params: Params) -> bool:
        chat = self._resolve_chat(params, sending=False)
        self._check_pin_rights(chat)
        message = self._own_message(chat, params, "message to pin not found")
        if "pinned_message" in message:
            raise bad_request("message to pin not found")  # service messages cannot be pinned
        mid = message["message_id"]
        if mid in chat.pinned:
            chat.pinned.remove(mid)
        chat.pinned.append(mid)
        # Telegram marks a pin with a service message in the chat ("… pinned «…»"); the bot
        # gets no update for its own.
        pinned = {k: v for k, v in message.items() if k != "reply_to_message"}
        self._new_message(
            chat,
            self._bot_sender(),
            message.get("message_thread_id"),
            {"pinned_message": copy.deepcopy(pinned)},
        )
        return True

    async def _unpin_chat_message(self, params: Params) -> bool:
        chat = self._resolve_chat(params, sending=False)
        self._check_pin_rights(chat)
        if params.get("message_id") is None:
            if chat.pinned:
                chat.pinned.pop()
            return True
        message = self._own_message(chat, params, "message to unpin not found")
        if message["message_id"] in chat.pinned:
            chat.pinned.remove(message["message_id"])
        return True

    async def _answer_callback_query(self, params: Params) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        created = self._queries.get(query_id)
        if created is None or time.monotonic() - created > self.callback_query_ttl:
            raise bad_request(_QUERY_INVALID.removeprefix("Bad Request: "))
        text = params.get("text")
        if text is not None and utf16_len(str(text)) > MAX_CALLBACK_ANSWER:
            raise bad_request("MESSAGE_TOO_LONG")
        del self._queries[query_id]  # a query can be answered once
        self.callback_answers.append(
            {
                "callback_query_id": query_id,
                "text": text,
                "show_alert": as_bool(params.get("show_alert")),
                "url": params.get("url"),
                "cache_time": params.get("cache_time"),
            }
        )
        return True

    async def _get_chat(self, params: Params) -> JSON:
        raw = params.get("chat_id")
        user = None
        if raw is not None and not str(raw).startswith("@"):
            user = self._users.get(as_int(raw, "chat not found"))
        if user is not None:
            chat = self._chats.get(user.id) or Chat(user.id, "private", user=user)
        else:
            chat = self._resolve_chat(params, sending=False)
        chat_info = chat.to_dict()
        if chat.pinned and chat.pinned[-1] in chat.messages:
            chat_info["pinned_message"] = copy.deepcopy(chat.messages[chat.pinned[-1]])
        return {
            **chat_info,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    async def _get_chat_member(self, params: Params) -> JSON:
        chat = self._resolve_chat(params, sending=False)
        user_id = as_int(params.get("user_id", ""), "user not found")
        if user_id == self.bot_user["id"]:
            status = "member" if chat.bot_member else "left"
            return {"status": status, "user": self._bot_sender()}
        user = self._users.get(user_id)
        if user is None:
            raise bad_request("user not found")
        if chat.user is not None:
            status = "member" if chat.user.id == user_id else "left"
        elif chat.members and chat.members[0] == user_id:
            anonymous = user_id in chat.anonymous
            return {"status": "creator", "user": user.to_dict(), "is_anonymous": anonymous}
        else:
            status = "member" if user_id in chat.members else "left"
        return {"status": status, "user": user.to_dict()}

    async def _send_chat_action(self, params: Params) -> bool:
        chat = self._resolve_chat(params, sending=True)
        self._thread(chat, params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True


def _lang(params: Params) -> str:
    return str(params.get("language_code") or "")


def _set_or_drop(message: JSON, key: str, value: Any) -> None:
    if value is None:
        message.pop(key, None)
    else:
        message[key] = value
