"""What the offline Bot API remembers: users, chats, messages, updates, faults, calls.

:class:`OfflineState` owns the server's state and the primitives that change it (new
messages, queued updates, waking waiters); the Bot API methods
(:mod:`offline_botapi.methods`) and the test-facing facade (:mod:`offline_botapi.server`) build
on it.  Nothing here speaks HTTP.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from offline_botapi.parse_mode import utf16_len
from offline_botapi.wire import JSON, OutageError

# A /command a user typed, as Telegram marks it with a bot_command entity.
_USER_COMMAND_RE = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w@/])")
# The sender Telegram puts on a message from an admin who "remains anonymous": the group itself
# is in sender_chat, and nobody's user id is given away.
ANONYMOUS_ADMIN: JSON = {
    "id": 1087968824,
    "is_bot": True,
    "first_name": "Group",
    "username": "GroupAnonymousBot",
}


def text_content(text: str) -> JSON:
    """A user's text with the ``bot_command`` entities Telegram marks in it."""
    content: JSON = {"text": text}
    entities = [
        {
            "type": "bot_command",
            "offset": utf16_len(text[: m.start()]),
            "length": utf16_len(m.group()),
        }
        for m in _USER_COMMAND_RE.finditer(text)
    ]
    if entities:
        content["entities"] = entities
    return content


@dataclass(frozen=True)
class ApiCall:
    """One successful Bot API call: method name as sent, decoded params, and the result."""

    method: str
    params: dict[str, Any]
    result: Any
    at: float


@dataclass
class Fault:
    """An injected fault: answer the next ``remaining`` matching calls with an error."""

    kind: str  # "429" or "5xx"
    remaining: int
    status: int
    retry_after: int
    methods: frozenset[str] | None
    include_get_updates: bool

    def applies(self, method: str) -> bool:
        """Whether this fault answers the next call of ``method`` (lower-case name)."""
        if self.remaining <= 0:
            return False
        if self.methods is not None:
            return method in self.methods
        return self.include_get_updates or method != "getupdates"


@dataclass
class User:
    """A human Telegram user."""

    id: int
    first_name: str
    username: str | None
    last_name: str | None
    started: bool
    blocked: bool = False

    def to_dict(self) -> JSON:
        """The user as a Bot API ``User`` object."""
        data: JSON = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        return data


@dataclass
class Chat:
    """A private chat, group or supergroup, with the messages in it."""

    id: int
    type: str  # "private", "group" or "supergroup"
    title: str | None = None
    user: User | None = None  # the other party of a private chat
    username: str | None = None
    is_forum: bool = False
    members: list[int] = field(default_factory=list)  # first member is the owner
    bot_member: bool = True
    topics: dict[int, str] = field(default_factory=dict)
    migrated_to: int | None = None
    next_message_id: int = 1
    messages: dict[int, JSON] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)  # bot messages: text as sent
    authors: dict[int, int] = field(default_factory=dict)  # user messages: id -> who wrote it
    anonymous: set[int] = field(default_factory=set)  # admins who post as the group itself
    pinned: list[int] = field(default_factory=list)  # pinned message ids, the newest last
    bot_admin: bool = False  # in a group: may the bot pin (can_pin_messages)?

    def to_dict(self) -> JSON:
        """The chat as a Bot API ``Chat`` object."""
        if self.user is not None:
            data = {"id": self.id, "type": "private", "first_name": self.user.first_name}
            if self.user.username:
                data["username"] = self.user.username
            return data
        data = {"id": self.id, "type": self.type, "title": self.title}
        if self.username:
            data["username"] = self.username
        if self.is_forum:
            data["is_forum"] = True
        return data


class OfflineState:
    """The state of a fake Telegram Bot API server for one bot, and its primitives."""

    def __init__(
        self,
        token: str = "123456789:OFFLINE-fleetbot-test-token",
        *,
        bot_username: str = "fleetbot_test_bot",
        bot_first_name: str = "FleetBot",
        strict_ampersand: bool = True,
        callback_query_ttl: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        bot_id, _, secret = token.partition(":")
        if not bot_id.isdigit() or not secret:
            raise ValueError("token must look like '<bot id>:<secret>'")
        self.token = token
        self.bot_user: JSON = {
            "id": int(bot_id),
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": True,  # privacy mode is not emulated
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.strict_ampersand = strict_ampersand
        self.callback_query_ttl = callback_query_ttl
        self._clock = clock
        self._users: dict[int, User] = {}
        self._chats: dict[int, Chat] = {}
        self._updates: list[JSON] = []
        self._update_ids = itertools.count(700_000_001)
        self._query_ids = itertools.count(4_387_000_000_000_000_001)
        self._queries: dict[str, float] = {}  # unanswered callback query id -> created at
        self._allowed_updates: list[str] | None = None
        self._poll_generation = 0
        self._poll_release = 0
        self._changed = asyncio.Event()
        self._outbox: list[tuple[int, JSON]] = []  # (chat id, message as first sent)
        self._taken_outbox: set[int] = set()
        self._taken_calls: set[int] = set()
        self._faults: list[Fault] = []
        self._outage = False
        self._outage_get_updates = True
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self.webhook: JSON | None = None
        self.sent_log: list[ApiCall] = []
        self.callback_answers: list[JSON] = []
        self.faults_served: Counter[str] = Counter()

    def _notify(self) -> None:
        # Wake every waiter; each one re-checks its own condition.
        self._changed.set()
        self._changed = asyncio.Event()

    def _check_outage(self, method: str) -> None:
        if self._outage and (self._outage_get_updates or method != "getupdates"):
            self.faults_served["outage"] += 1
            raise OutageError("offline Bot API outage: connection refused")

    def _user(self, user_id: int) -> User:
        if user_id not in self._users:
            raise LookupError(f"unknown user {user_id}; call add_user first")
        return self._users[user_id]

    def _chat(self, chat_id: int) -> Chat:
        if chat_id not in self._chats:
            raise LookupError(f"unknown chat {chat_id}")
        return self._chats[chat_id]

    def _private_chat(self, user: User) -> Chat:
        if user.id not in self._chats:
            self._chats[user.id] = Chat(user.id, "private", user=user)
        return self._chats[user.id]

    def _sender(self, chat: Chat, user_id: int | None) -> JSON:
        if user_id is not None:
            return self._user(user_id).to_dict()
        if chat.members:
            return self._users[chat.members[0]].to_dict()
        return self._bot_sender()

    def _bot_sender(self) -> JSON:
        # Messages carry only the basic User fields; the can_* flags are getMe-only.
        keys = ("id", "is_bot", "first_name", "username")
        return {k: self.bot_user[k] for k in keys}

    def _new_message(self, chat: Chat, sender: JSON, thread_id: int | None, content: JSON) -> JSON:
        message: JSON = {
            "message_id": chat.next_message_id,
            "from": sender,
            "chat": chat.to_dict(),
            "date": int(self._clock()),
        }
        chat.next_message_id += 1
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        message.update(content)
        chat.messages[message["message_id"]] = message
        return message

    def set_bot_admin(self, chat_id: int, admin: bool = True) -> None:
        """Make the bot an admin of a group that may pin messages (or not, with False)."""
        self._chat(chat_id).bot_admin = admin

    def pinned(self, chat_id: int) -> list[JSON]:
        """The chat's pinned messages as they are now, the most recently pinned last."""
        chat = self._chat(chat_id)
        return [copy.deepcopy(chat.messages[m]) for m in chat.pinned if m in chat.messages]

    def _enqueue(self, kind: str, payload: JSON) -> None:
        self._updates.append({"update_id": next(self._update_ids), kind: copy.deepcopy(payload)})
        self._notify()

    def _scope_key(self, scope: JSON | None, language_code: str) -> tuple[str, str]:
        scope = scope or {"type": "default"}
        return json.dumps(scope, sort_keys=True), language_code
