"""An in-process, strict stand-in for the Telegram Bot API HTTP server.

Used by the tests and by ``fleetbot demo``: this machine cannot reach Telegram, and a mock
that accepts anything would let the bot pass tests with output Telegram rejects.  So this
server validates like Telegram does (HTML entities, lengths, keyboards, chats, threads) and
answers with Telegram's own error texts, which python-telegram-bot turns into the same
exceptions (``BadRequest``, ``Forbidden``, ``RetryAfter``, ``ChatMigrated``...) as live.

Two front ends share one :class:`OfflineBotAPI` state:

* :class:`OfflineTransport` -- an ``httpx`` transport; no sockets.  Quickest way in::

      api = OfflineBotAPI()
      app = (
          ApplicationBuilder()
          .token(api.token)  # any base_url works: the transport catches every request
          .request(api.make_request())
          .get_updates_request(api.make_request())
          .build()
      )
      # or simply: app = api.application_builder().build()

* :meth:`OfflineBotAPI.serve` -- the same API over HTTP on a loopback port (uvicorn, in the
  running loop) for configs that only take a ``base_url``::

      async with api.serve() as base_url:  # "http://127.0.0.1:PORT/bot"
          app = ApplicationBuilder().token(api.token).base_url(base_url).build()

Faults: ``inject_429`` / ``inject_5xx`` answer the next N matching calls with that error;
``outage()`` makes every call fail at transport level (``httpx.ConnectError`` in-process,
which PTB reports as ``NetworkError``; a bare 502 when served over HTTP).  By default the
429/5xx faults skip ``getUpdates`` so a background poller cannot swallow them; outages
hit everything.  Group privacy mode is not emulated: the bot sees every group message.

People: ``send_text`` (a message; from an admin who remains anonymous, see
``set_anonymous_admin``, it comes from GroupAnonymousBot), ``edit_text`` (an
``edited_message`` update, as when a user edits what they sent), ``press_button``.

The server is split by concept: :mod:`offline_botapi.wire` (request decoding, param checks,
transport and ASGI front end), :mod:`offline_botapi.state` (users, chats, messages, updates),
:mod:`offline_botapi.methods` (the Bot API methods).  This module is the facade tests use;
it re-exports the public names of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from telegram.request import HTTPXRequest

from offline_botapi.methods import BotApiMethods
from offline_botapi.parse_mode import (
    HTMLParseError as HTMLParseError,
    ParsedText as ParsedText,
    parse_html as parse_html,
    strip_text as strip_text,
    utf16_len as utf16_len,
)
from offline_botapi.state import ANONYMOUS_ADMIN, ApiCall, Chat, Fault, User, text_content
from offline_botapi.wire import (
    JSON as JSON,
    MAX_BUTTONS as MAX_BUTTONS,
    MAX_CALLBACK_ANSWER as MAX_CALLBACK_ANSWER,
    MAX_CALLBACK_DATA_BYTES as MAX_CALLBACK_DATA_BYTES,
    MAX_TEXT as MAX_TEXT,
    OfflineTransport,
    OutageError,
    Receive,
    Scope,
    Send,
    answer_asgi,
    serve_asgi,
)

if TYPE_CHECKING:
    from telegram.ext._applicationbuilder import InitApplicationBuilder

__all__ = ["ApiCall", "OfflineBotAPI", "OfflineTransport", "OutageError"]

_T = TypeVar("_T")

_SUPERGROUP_BELOW = -1_000_000_000_000  # supergroup ids look like -100xxxxxxxxxx


class _OutageHandle:
    """Returned by :meth:`OfflineBotAPI.outage`; as a context manager it ends the outage."""

    def __init__(self, api: OfflineBotAPI) -> None:
        self._api = api

    def __enter__(self) -> _OutageHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._api.outage(False)


class OfflineBotAPI(BotApiMethods):
    """State and behaviour of a fake Telegram Bot API server for one bot.

    All methods must be used from one event loop.  Everything returned to callers is a
    deep copy, so tests cannot corrupt the server state by mutating results.
    """

    def make_request(self, *, read_timeout: float | None = 5.0) -> HTTPXRequest:
        """A PTB ``HTTPXRequest`` whose traffic goes to this API instead of the network."""
        return HTTPXRequest(
            read_timeout=read_timeout,
            # trust_env=False: an HTTPS_PROXY in the environment would otherwise mount a
            # proxy transport that takes precedence over ours.
            httpx_kwargs={"transport": OfflineTransport(self), "trust_env": False},
        )

    def application_builder(self) -> InitApplicationBuilder:
        """``ApplicationBuilder`` preset with this API's token and offline requests."""
        from telegram.ext import ApplicationBuilder

        return (
            ApplicationBuilder()
            .token(self.token)
            .request(self.make_request())
            .get_updates_request(self.make_request())
        )

    async def handle_http(
        self, http_method: str, path: str, content_type: str, body: bytes, query: str = ""
    ) -> tuple[int, bytes]:
        """Answer one HTTP request (``.../bot<token>/<method>``): ``(status, JSON bytes)``.

        Raises :class:`OutageError` during an outage; front ends turn it into a
        connection failure.
        """
        status, answer = await self._handle(http_method, path, content_type, body, query)
        return status, json.dumps(answer, ensure_ascii=False).encode()

    async def asgi_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point (HTTP only), used by :meth:`serve`."""
        await answer_asgi(self, scope, receive, send)

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve the API over HTTP in the running loop; yields the ``base_url`` for PTB.

        ``port=0`` picks a free port.  On exit pending long polls return at once.
        """
        async with serve_asgi(self.asgi_app, host, port, self._release_polls) as base_url:
            yield base_url

    def _release_polls(self) -> None:
        self._poll_release += 1
        self._notify()

    def add_user(
        self,
        user_id: int,
        first_name: str,
        username: str | None = None,
        *,
        last_name: str | None = None,
        started: bool = True,
    ) -> JSON:
        """Register a human user; ``started`` means they already pressed Start in private."""
        if user_id <= 0 or user_id in self._users:
            raise ValueError(f"user id {user_id} is invalid or taken")
        user = User(user_id, first_name, username, last_name, started)
        self._users[user_id] = user
        if started:
            self._private_chat(user)
        return user.to_dict()

    def add_group(
        self,
        chat_id: int,
        title: str,
        members: Iterable[int] = (),
        *,
        forum: bool = False,
        username: str | None = None,
    ) -> JSON:
        """Create a group with the bot in it.  Ids below -10**12 are supergroups.

        The first member is the owner.  ``forum=True`` needs a supergroup id.
        """
        if chat_id >= 0 or chat_id in self._chats:
            raise ValueError(f"group id {chat_id} is invalid or taken")
        kind = "supergroup" if chat_id < _SUPERGROUP_BELOW else "group"
        if forum and kind != "supergroup":
            raise ValueError("forums must be supergroups (id like -100xxxxxxxxxx)")
        member_ids = list(members)
        for uid in member_ids:
            self._user(uid)
        chat = Chat(chat_id, kind, title, username=username, is_forum=forum, members=member_ids)
        self._chats[chat_id] = chat
        return chat.to_dict()

    def create_topic(self, chat_id: int, name: str, *, user_id: int | None = None) -> int:
        """Open a forum topic (as the owner by default) and return its message_thread_id."""
        chat = self._chat(chat_id)
        if not chat.is_forum:
            raise ValueError(f"chat {chat_id} is not a forum")
        sender = self._sender(chat, user_id)
        thread_id = chat.next_message_id
        chat.topics[thread_id] = name
        content = {"forum_topic_created": {"name": name, "icon_color": 7322096}}
        message = self._new_message(chat, sender, thread_id, content)
        self._enqueue("message", message)
        return thread_id

    def migrate_group(self, old_chat_id: int) -> int:
        """Upgrade a basic group to a supergroup like Telegram; return the new chat id."""
        old = self._chat(old_chat_id)
        if old.type != "group" or old.migrated_to is not None:
            raise ValueError(f"chat {old_chat_id} is not a basic group")
        new_id = _SUPERGROUP_BELOW - abs(old_chat_id)
        if new_id in self._chats:
            raise ValueError(f"chat {new_id} already exists")
        new = Chat(new_id, "supergroup", old.title, members=list(old.members))
        new.bot_member = old.bot_member
        self._chats[new_id] = new
        old.migrated_to = new_id
        sender = self._sender(old, None)
        for chat, content in (
            (old, {"migrate_to_chat_id": new_id}),
            (new, {"migrate_from_chat_id": old_chat_id}),
        ):
            self._enqueue("message", self._new_message(chat, sender, None, content))
        return new_id

    def set_anonymous_admin(self, chat_id: int, user_id: int, anonymous: bool = True) -> None:
        """The group's creator turns "Remain anonymous" on (or off): from now on their
        messages there come from GroupAnonymousBot with the group as ``sender_chat``.

        As on Telegram, only in supergroups (switching it on upgrades a basic group); the
        stand-in's only admin is the creator (the first member).  Button presses still show
        who pressed.
        """
        chat = self._chat(chat_id)
        if chat.type != "supergroup":
            raise ValueError(
                f"chat {chat_id} is not a supergroup; only those have anonymous admins"
            )
        if not chat.members or chat.members[0] != user_id:
            raise ValueError(f"user {user_id} is not the creator of chat {chat_id}")
        if anonymous:
            chat.anonymous.add(user_id)
        else:
            chat.anonymous.discard(user_id)

    def block_bot(self, user_id: int, blocked: bool = True) -> None:
        """The user blocks (or with ``blocked=False`` unblocks) the bot."""
        self._user(user_id).blocked = blocked

    def remove_bot(self, chat_id: int) -> None:
        """Kick the bot from a group: further sends fail with 403 like Telegram."""
        self._chat(chat_id).bot_member = False

    async def send_text(
        self,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        thread_id: int | None = None,
        *,
        reply_to: int | None = None,
    ) -> JSON:
        """A user sends ``text`` (private chat by default); queues the update.

        A ``/command`` gets its ``bot_command`` entity (``@botname`` included), which is
        what PTB's CommandHandler matches.  Writing in private (re)starts and unblocks the
        bot, as pressing "Restart" in a client does.  ``reply_to`` makes it a reply to that
        message of the chat, which the update carries as ``reply_to_message`` (one level
        deep, as Telegram sends it).
        """
        user = self._user(user_id)
        if not text.strip() or utf16_len(text) > MAX_TEXT:
            raise ValueError("users can only send 1-4096 characters of text")
        if chat_id is None:
            user.started, user.blocked = True, False
            chat = self._private_chat(user)
        else:
            chat = self._chat(chat_id)
            if chat.migrated_to is not None:
                raise ValueError(f"chat {chat_id} was migrated to {chat.migrated_to}")
            if chat.user is None and user_id not in chat.members:
                raise ValueError(f"user {user_id} is not a member of {chat_id}")
        if thread_id is not None and thread_id not in chat.topics:
            raise ValueError(f"thread {thread_id} is not a topic of chat {chat.id}")
        content = text_content(text)
        if reply_to is not None:
            target = chat.messages.get(reply_to)
            if target is None:
                raise ValueError(f"no message {reply_to} in chat {chat.id} to reply to")
            content["reply_to_message"] = {
                k: copy.deepcopy(v) for k, v in target.items() if k != "reply_to_message"
            }
        sender = user.to_dict()
        if user_id in chat.anonymous:
            sender = dict(ANONYMOUS_ADMIN)
            content["sender_chat"] = chat.to_dict()
        message = self._new_message(chat, sender, thread_id, content)
        chat.authors[message["message_id"]] = user_id
        self._enqueue("message", message)
        return copy.deepcopy(message)

    async def edit_text(self, user_id: int, chat_id: int, message_id: int, text: str) -> JSON:
        """A user edits a text message they sent; queues an ``edited_message`` update.

        Like Telegram: only the author can edit, only text messages, and an edit that changes
        nothing is refused.  The update carries the whole message as it is now (same id and
        date, the new text and entities, an ``edit_date``).
        """
        chat = self._chat(chat_id)
        if chat.authors.get(message_id) != user_id:
            raise LookupError(f"user {user_id} wrote no message {message_id} in chat {chat_id}")
        message = chat.messages[message_id]
        if "text" not in message:
            raise ValueError(f"message {message_id} has no text to edit")
        if not text.strip() or utf16_len(text) > MAX_TEXT:
            raise ValueError("users can only send 1-4096 characters of text")
        if text == message["text"]:
            raise ValueError("MESSAGE_NOT_MODIFIED: the edit changes nothing")
        message.pop("entities", None)
        message.update(text_content(text))
        message["edit_date"] = max(int(self._clock()), message["date"])
        self._enqueue("edited_message", message)
        return copy.deepcopy(message)

    async def press_button(
        self, user_id: int, chat_id: int, message_id: int, callback_data: str
    ) -> str:
        """A user presses an inline button; queues the callback_query, returns its id.

        Raises ``LookupError`` unless that message currently shows a button with exactly
        this ``callback_data``.
        """
        user = self._user(user_id)
        chat = self._chat(chat_id)
        if chat.user is None and user_id not in chat.members:
            raise LookupError(f"user {user_id} cannot see chat {chat_id}")
        if chat.user is not None and chat.user.id != user_id:
            raise LookupError(f"user {user_id} cannot see chat {chat_id}")
        message = chat.messages.get(message_id)
        if message is None:
            raise LookupError(f"no message {message_id} in chat {chat_id}")
        rows = message.get("reply_markup", {}).get("inline_keyboard", [])
        if not any(b.get("callback_data") == callback_data for row in rows for b in row):
            raise LookupError(f"message {message_id} has no button {callback_data!r}")
        query_id = str(next(self._query_ids))
        self._queries[query_id] = time.monotonic()
        self._enqueue(
            "callback_query",
            {
                "id": query_id,
                "from": user.to_dict(),
                "message": copy.deepcopy(message),
                "chat_instance": str((chat_id * 2654435761) % 2**63),
                "data": callback_data,
            },
        )
        return query_id

    def messages(self, chat_id: int, thread_id: int | None = None) -> list[JSON]:
        """The bot's messages now in the chat (after edits/deletes), oldest first.

        ``thread_id=None`` means all threads.
        """
        chat = self._chat(chat_id)
        return [
            copy.deepcopy(m)
            for m in chat.messages.values()
            if m["message_id"] in chat.sources  # i.e. sent through sendMessage
            and (thread_id is None or m.get("message_thread_id") == thread_id)
        ]

    def source_text(self, chat_id: int, message_id: int) -> str:
        """The bot message's text exactly as last sent (e.g. the HTML before parsing)."""
        return self._chat(chat_id).sources[message_id]

    def calls(self, method: str) -> list[ApiCall]:
        """Successful calls of one method (case-insensitive name)."""
        return [c for c in self.sent_log if c.method.lower() == method.lower()]

    def commands(self, scope: JSON | None = None, language_code: str = "") -> list[JSON]:
        """The command list set for a scope (default scope if ``None``)."""
        return copy.deepcopy(self._commands.get(self._scope_key(scope, language_code), []))

    def pending_updates(self) -> list[JSON]:
        """Updates not yet confirmed by a getUpdates offset."""
        return copy.deepcopy(self._updates)

    async def wait_for_message(
        self,
        chat_id: int,
        predicate: Callable[[JSON], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - a plain number reads best in tests
    ) -> JSON:
        """Wait for the bot's next message to ``chat_id`` (as first sent) and return it.

        Each sent message is handed out once, oldest first, so a reply that arrived before
        this call is not missed; messages failing ``predicate`` stay available.  Raises
        ``TimeoutError``.
        """

        def find() -> JSON | None:
            for index, (cid, message) in enumerate(self._outbox):
                if index in self._taken_outbox or cid != chat_id:
                    continue
                if predicate is None or predicate(message):
                    self._taken_outbox.add(index)
                    return copy.deepcopy(message)
            return None

        return await self._wait(find, timeout)

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[ApiCall], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - a plain number reads best in tests
    ) -> ApiCall:
        """Like :meth:`wait_for_message`, for successful calls of ``method`` in the log."""

        def find() -> ApiCall | None:
            for index, call in enumerate(self.sent_log):
                if index in self._taken_calls or call.method.lower() != method.lower():
                    continue
                if predicate is None or predicate(call):
                    self._taken_calls.add(index)
                    return call
            return None

        return await self._wait(find, timeout)

    async def _wait(self, find: Callable[[], _T | None], seconds: float) -> _T:
        async with asyncio.timeout(seconds):
            while (found := find()) is None:
                await self._changed.wait()
            return found

    def inject_429(
        self,
        count: int,
        retry_after: int,
        *,
        methods: Iterable[str] | None = None,
        include_get_updates: bool = False,
    ) -> None:
        """Answer the next ``count`` calls (of ``methods``, if given) with 429 Too Many Requests."""
        self._faults.append(
            Fault("429", count, 429, retry_after, _lower(methods), include_get_updates)
        )

    def inject_5xx(
        self,
        count: int,
        status: int = 502,
        *,
        methods: Iterable[str] | None = None,
        include_get_updates: bool = False,
    ) -> None:
        """Answer the next ``count`` calls (of ``methods``, if given) with a 5xx error."""
        if not 500 <= status <= 599:
            raise ValueError("status must be 5xx")
        self._faults.append(Fault("5xx", count, status, 0, _lower(methods), include_get_updates))

    def clear_faults(self) -> None:
        """Drop injected faults that were not served yet (does not end an outage)."""
        self._faults.clear()

    def outage(self, active: bool = True, *, include_get_updates: bool = True) -> _OutageHandle:
        """Start/stop an outage; ``with api.outage(): ...`` ends it on exit.

        Calls fail with ``httpx.ConnectError`` in-process (502 when served over HTTP).
        """
        self._outage = active
        self._outage_get_updates = include_get_updates
        if active:
            self._notify()  # running long polls fail now, like a dropped connection
        return _OutageHandle(self)


def _lower(methods: Iterable[str] | None) -> frozenset[str] | None:
    return None if methods is None else frozenset(m.lower() for m in methods)
