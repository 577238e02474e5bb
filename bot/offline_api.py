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
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import email.parser
import email.policy
import itertools
import json
import re
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx
from telegram.request import HTTPXRequest

from bot.offline_html import HTMLParseError, ParsedText, parse_html, strip_text, utf16_len

if TYPE_CHECKING:
    from telegram.ext._applicationbuilder import InitApplicationBuilder

__all__ = ["ApiCall", "OfflineBotAPI", "OfflineTransport", "OutageError"]

JSON = dict[str, Any]
_Params = dict[str, Any]
_Handler = Callable[[_Params], Awaitable[Any]]
_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_T = TypeVar("_T")

# Telegram's limits (https://core.telegram.org/bots/api), counted in UTF-16 code units.
MAX_TEXT = 4096
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER = 200
MAX_BUTTONS = 100
_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
# A /command a user typed, as Telegram marks it with a bot_command entity.
_USER_COMMAND_RE = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w@/])")
_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
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
_SUPERGROUP_BELOW = -1_000_000_000_000  # supergroup ids look like -100xxxxxxxxxx

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
_BAD_MARKUP = "Bad Request: can't parse reply keyboard markup JSON object"


class OutageError(Exception):
    """Raised inside the API during :meth:`OfflineBotAPI.outage`; front ends map it."""


class _ApiError(Exception):
    """A Telegram error answer: HTTP status, description and optional parameters."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


@dataclass(frozen=True)
class ApiCall:
    """One successful Bot API call: method name as sent, decoded params, and the result."""

    method: str
    params: dict[str, Any]
    result: Any
    at: float


@dataclass
class _Fault:
    kind: str  # "429" or "5xx"
    remaining: int
    status: int
    retry_after: int
    methods: frozenset[str] | None
    include_get_updates: bool

    def applies(self, method: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.methods is not None:
            return method in self.methods
        return self.include_get_updates or method != "getupdates"


@dataclass
class _User:
    id: int
    first_name: str
    username: str | None
    last_name: str | None
    started: bool
    blocked: bool = False

    def to_dict(self) -> JSON:
        data: JSON = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        return data


@dataclass
class _Chat:
    id: int
    type: str  # "private", "group" or "supergroup"
    title: str | None = None
    user: _User | None = None  # the other party of a private chat
    username: str | None = None
    is_forum: bool = False
    members: list[int] = field(default_factory=list)  # first member is the owner
    bot_member: bool = True
    topics: dict[int, str] = field(default_factory=dict)
    migrated_to: int | None = None
    next_message_id: int = 1
    messages: dict[int, JSON] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)  # bot messages: text as sent

    def to_dict(self) -> JSON:
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


class OfflineTransport(httpx.AsyncBaseTransport):
    """``httpx`` transport that answers every request from an :class:`OfflineBotAPI`.

    Honours the request's read timeout (``httpx.ReadTimeout``, i.e. PTB's ``TimedOut``) so a
    long poll longer than the client's read timeout fails here as it would on the network.
    """

    def __init__(self, api: OfflineBotAPI) -> None:
        self.api = api

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Route one request into the API and wrap its answer as an ``httpx.Response``."""
        body = await request.aread()
        read_timeout = request.extensions.get("timeout", {}).get("read")
        try:
            async with asyncio.timeout(read_timeout):
                status, payload = await self.api.handle_http(
                    request.method,
                    request.url.path,
                    request.headers.get("content-type", ""),
                    body,
                    request.url.query.decode("ascii", "replace"),
                )
        except OutageError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout("offline Bot API: read timed out", request=request) from exc
        return httpx.Response(
            status,
            headers={"content-type": "application/json"},
            content=payload,
            request=request,
        )


class OfflineBotAPI:
    """State and behaviour of a fake Telegram Bot API server for one bot.

    All methods must be used from one event loop.  Everything returned to callers is a
    deep copy, so tests cannot corrupt the server state by mutating results.
    """

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
        self._users: dict[int, _User] = {}
        self._chats: dict[int, _Chat] = {}
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
        self._faults: list[_Fault] = []
        self._outage = False
        self._outage_get_updates = True
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self.webhook: JSON | None = None
        self.sent_log: list[ApiCall] = []
        self.callback_answers: list[JSON] = []
        self.faults_served: Counter[str] = Counter()
        self._handlers: dict[str, _Handler] = {
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
            "answercallbackquery": self._answer_callback_query,
            "getchat": self._get_chat,
            "getchatmember": self._get_chat_member,
            "sendchataction": self._send_chat_action,
            "close": self._ok,
            "logout": self._ok,
        }

    # ------------------------------------------------------------------ front ends

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

    async def asgi_app(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """ASGI entry point (HTTP only), used by :meth:`serve`."""
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            status, payload = await self.handle_http(
                scope["method"],
                scope["path"],
                headers.get("content-type", ""),
                body,
                scope.get("query_string", b"").decode("latin-1"),
            )
            content_type = b"application/json"
        except OutageError:
            # A socket server cannot refuse connections per request; a proxy-style 502
            # with a non-JSON body is the closest thing (PTB: NetworkError).
            status, payload, content_type = 502, b"<html>502 Bad Gateway</html>", b"text/html"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type)],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve the API over HTTP in the running loop; yields the ``base_url`` for PTB.

        ``port=0`` picks a free port.  On exit pending long polls return at once.
        """
        import uvicorn

        class _Server(uvicorn.Server):
            # Leave SIGINT/SIGTERM to the host program instead of uvicorn.
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        bound_port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.asgi_app,
            interface="asgi3",
            lifespan="off",
            ws="none",
            http="h11",
            log_config=None,  # don't let uvicorn reconfigure the process's logging
            log_level="warning",
            access_log=False,
        )
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    task.result()  # re-raise the startup failure
                    raise RuntimeError("offline Bot API server stopped during startup")
                await asyncio.sleep(0.005)
            yield f"http://{host}:{bound_port}/bot"
        finally:
            self._poll_release += 1
            self._notify()
            server.should_exit = True
            await task
            sock.close()

    # ------------------------------------------------------------------ simulation

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
        user = _User(user_id, first_name, username, last_name, started)
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
        chat = _Chat(chat_id, kind, title, username=username, is_forum=forum, members=member_ids)
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
        new = _Chat(new_id, "supergroup", old.title, members=list(old.members))
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

    def block_bot(self, user_id: int, blocked: bool = True) -> None:
        """The user blocks (or with ``blocked=False`` unblocks) the bot."""
        self._user(user_id).blocked = blocked

    def remove_bot(self, chat_id: int) -> None:
        """Kick the bot from a group: further sends fail with 403 like Telegram."""
        self._chat(chat_id).bot_member = False

    async def send_text(
        self, user_id: int, text: str, chat_id: int | None = None, thread_id: int | None = None
    ) -> JSON:
        """A user sends ``text`` (private chat by default); queues the update.

        A ``/command`` gets its ``bot_command`` entity (``@botname`` included), which is
        what PTB's CommandHandler matches.  Writing in private (re)starts and unblocks the
        bot, as pressing "Restart" in a client does.
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
        message = self._new_message(chat, user.to_dict(), thread_id, content)
        self._enqueue("message", message)
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

    # ------------------------------------------------------------------ inspection

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

    # ------------------------------------------------------------------ faults

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
            _Fault("429", count, 429, retry_after, _lower(methods), include_get_updates)
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
        self._faults.append(_Fault("5xx", count, status, 0, _lower(methods), include_get_updates))

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

    # ------------------------------------------------------------------ dispatch

    async def _handle(
        self, http_method: str, path: str, content_type: str, body: bytes, query: str
    ) -> tuple[int, JSON]:
        parts = path.rstrip("/").split("/")
        if len(parts) < 2 or not parts[-2].startswith("bot"):
            return 404, _error(404, "Not Found")
        if parts[-2][3:] != self.token:
            return 401, _error(401, "Unauthorized")
        name = parts[-1]
        handler = self._handlers.get(name.lower())
        if handler is None:
            return 404, _error(404, "Not Found")
        self._check_outage(name.lower())
        fault = next((f for f in self._faults if f.applies(name.lower())), None)
        if fault is not None:
            fault.remaining -= 1
            self.faults_served[fault.kind] += 1
            if fault.kind == "429":
                description = f"Too Many Requests: retry after {fault.retry_after}"
                params = {"retry_after": fault.retry_after}
                return 429, _error(429, description, params)
            return fault.status, _error(fault.status, HTTPStatus(fault.status).phrase)
        try:
            params = _decode_params(content_type, body, query)
            result = await handler(params)
        except _ApiError as err:
            return err.code, _error(err.code, err.description, err.parameters)
        self.sent_log.append(ApiCall(name, params, copy.deepcopy(result), self._clock()))
        self._notify()
        return 200, {"ok": True, "result": result}

    def _check_outage(self, method: str) -> None:
        if self._outage and (self._outage_get_updates or method != "getupdates"):
            self.faults_served["outage"] += 1
            raise OutageError("offline Bot API outage: connection refused")

    # ------------------------------------------------------------------ state helpers

    def _notify(self) -> None:
        # Wake every waiter; each one re-checks its own condition.
        self._changed.set()
        self._changed = asyncio.Event()

    def _user(self, user_id: int) -> _User:
        if user_id not in self._users:
            raise LookupError(f"unknown user {user_id}; call add_user first")
        return self._users[user_id]

    def _chat(self, chat_id: int) -> _Chat:
        if chat_id not in self._chats:
            raise LookupError(f"unknown chat {chat_id}")
        return self._chats[chat_id]

    def _private_chat(self, user: _User) -> _Chat:
        if user.id not in self._chats:
            self._chats[user.id] = _Chat(user.id, "private", user=user)
        return self._chats[user.id]

    def _sender(self, chat: _Chat, user_id: int | None) -> JSON:
        if user_id is not None:
            return self._user(user_id).to_dict()
        if chat.members:
            return self._users[chat.members[0]].to_dict()
        return self._bot_sender()

    def _bot_sender(self) -> JSON:
        # Messages carry only the basic User fields; the can_* flags are getMe-only.
        keys = ("id", "is_bot", "first_name", "username")
        return {k: self.bot_user[k] for k in keys}

    def _new_message(self, chat: _Chat, sender: JSON, thread_id: int | None, content: JSON) -> JSON:
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

    def _enqueue(self, kind: str, payload: JSON) -> None:
        self._updates.append({"update_id": next(self._update_ids), kind: copy.deepcopy(payload)})
        self._notify()

    def _scope_key(self, scope: JSON | None, language_code: str) -> tuple[str, str]:
        scope = scope or {"type": "default"}
        return json.dumps(scope, sort_keys=True), language_code

    # ------------------------------------------------------------------ param helpers

    def _resolve_chat(self, params: _Params, *, sending: bool) -> _Chat:
        """Find the target chat and apply Telegram's access rules."""
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise _bad("chat_id is empty")
        chat: _Chat | None = None
        if isinstance(raw, str) and raw.startswith("@"):
            chat = next((c for c in self._chats.values() if c.username == raw[1:]), None)
        else:
            chat_id = _as_int(raw, "chat not found")
            chat = self._chats.get(chat_id)
            user = self._users.get(chat_id)
            if chat is None and user is not None and sending:
                raise _ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        if chat is None:
            raise _bad("chat not found")
        if chat.migrated_to is not None:
            raise _ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": chat.migrated_to},
            )
        if chat.user is not None and sending:
            if chat.user.blocked:
                raise _ApiError(403, "Forbidden: bot was blocked by the user")
            if not chat.user.started:
                raise _ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        if not chat.bot_member:
            kind = "supergroup" if chat.type == "supergroup" else "group"
            raise _ApiError(403, f"Forbidden: bot was kicked from the {kind} chat")
        return chat

    def _thread(self, chat: _Chat, params: _Params) -> int | None:
        raw = params.get("message_thread_id")
        if raw is None:
            return None
        thread_id = _as_int(raw, "message thread not found")
        if not chat.is_forum or thread_id not in chat.topics:
            raise _bad("message thread not found")
        return thread_id

    def _message_text(self, params: _Params) -> tuple[ParsedText, str]:
        """Parse ``text`` with ``parse_mode``/``entities``; enforce emptiness and length."""
        source = params.get("text")
        if not isinstance(source, str) or not source:
            raise _bad("message text is empty")
        mode = str(params.get("parse_mode") or "")
        if mode.lower() == "html":
            try:
                parsed = parse_html(source, strict_ampersand=self.strict_ampersand)
            except HTMLParseError as err:
                raise _bad(f"can't parse entities: {err}") from err
        elif mode.lower() in ("", "markdown", "markdownv2"):
            # Markdown is not validated offline; fleetbot sends HTML.
            entities = _as_json(params.get("entities"), "can't parse entities JSON object")
            parsed = ParsedText(source, list(entities or []) if not mode else [])
        else:
            raise _bad("unsupported parse_mode")
        parsed = strip_text(parsed)
        if not parsed.text:
            raise _bad("message text is empty")
        if utf16_len(parsed.text) > MAX_TEXT:
            raise _bad("message is too long")
        return parsed, source

    def _reply_markup(self, params: _Params, *, inline_only: bool) -> JSON | None:
        raw = params.get("reply_markup")
        if raw is None:
            return None
        markup = _as_json(raw, _BAD_MARKUP)
        if not isinstance(markup, dict):
            raise _bad(_BAD_MARKUP.removeprefix("Bad Request: "))
        if "inline_keyboard" in markup:
            return {"inline_keyboard": _check_inline_keyboard(markup["inline_keyboard"])}
        if inline_only:
            raise _bad("inline keyboard expected")
        if not any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
            raise _bad(_BAD_MARKUP.removeprefix("Bad Request: "))
        return markup

    def _own_message(self, chat: _Chat, params: _Params, missing: str) -> JSON:
        if params.get("inline_message_id") is not None:
            raise _bad("inline messages are not supported by the offline API")
        raw = params.get("message_id")
        if raw is None:
            raise _bad("message identifier is not specified")
        message = chat.messages.get(_as_int(raw, missing))
        if message is None:
            raise _bad(missing)
        return message

    # ------------------------------------------------------------------ Bot API methods

    async def _ok(self, params: _Params) -> bool:
        return True

    async def _get_me(self, params: _Params) -> JSON:
        return copy.deepcopy(self.bot_user)

    async def _get_updates(self, params: _Params) -> list[JSON]:
        """Long polling: return pending updates at once, else wait up to ``timeout`` s."""
        if self.webhook is not None:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _as_int(params.get("offset", 0), "invalid offset")
        limit = min(max(_as_int(params.get("limit", 100), "invalid limit"), 1), 100)
        # Fractions are accepted (PTB sends them for sub-second timedeltas).
        timeout = max(_as_float(params.get("timeout", 0), "invalid timeout"), 0.0)
        allowed = params.get("allowed_updates")
        if allowed is not None:
            self._allowed_updates = list(_as_json(allowed, "can't parse allowed_updates")) or None
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
                raise _ApiError(
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

    async def _set_webhook(self, params: _Params) -> bool:
        url = str(params.get("url") or "")
        if not url:
            return await self._delete_webhook(params)
        if not url.startswith("https://"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if _as_bool(params.get("drop_pending_updates")):
            self._updates.clear()
        self.webhook = {"url": url, "secret_token": params.get("secret_token")}
        return True

    async def _delete_webhook(self, params: _Params) -> bool:
        if _as_bool(params.get("drop_pending_updates")):
            self._updates.clear()
        self.webhook = None
        return True

    async def _get_webhook_info(self, params: _Params) -> JSON:
        info: JSON = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self._allowed_updates is not None:
            info["allowed_updates"] = list(self._allowed_updates)
        return info

    async def _set_my_commands(self, params: _Params) -> bool:
        commands = _as_json(params.get("commands"), "can't parse commands JSON object")
        if not isinstance(commands, list):
            raise _bad("commands must be an array")
        if len(commands) > 100:
            raise _bad("BOT_COMMANDS_TOO_MUCH")
        clean: list[JSON] = []
        for item in commands:
            command = item.get("command") if isinstance(item, dict) else None
            description = item.get("description") if isinstance(item, dict) else None
            if not isinstance(command, str) or not _COMMAND_RE.match(command):
                raise _bad("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": command, "description": description})
        key = self._scope_key(_as_json(params.get("scope"), "can't parse scope"), _lang(params))
        if clean:
            self._commands[key] = clean
        else:
            self._commands.pop(key, None)
        return True

    async def _get_my_commands(self, params: _Params) -> list[JSON]:
        scope = _as_json(params.get("scope"), "can't parse scope")
        return copy.deepcopy(self._commands.get(self._scope_key(scope, _lang(params)), []))

    async def _delete_my_commands(self, params: _Params) -> bool:
        scope = _as_json(params.get("scope"), "can't parse scope")
        self._commands.pop(self._scope_key(scope, _lang(params)), None)
        return True

    async def _send_message(self, params: _Params) -> JSON:
        chat = self._resolve_chat(params, sending=True)
        thread_id = self._thread(chat, params)
        parsed, source = self._message_text(params)
        markup = self._reply_markup(params, inline_only=False)
        content: JSON = {"text": parsed.text}
        if parsed.entities:
            content["entities"] = parsed.entities
        reply = _as_json(params.get("reply_parameters"), "can't parse reply parameters")
        if isinstance(reply, dict) and "message_id" in reply:
            target = chat.messages.get(_as_int(reply["message_id"], "bad reply"))
            if target is not None:
                content["reply_to_message"] = copy.deepcopy(target)
            elif not _as_bool(reply.get("allow_sending_without_reply")):
                raise _bad("message to be replied not found")
        if markup is not None and "inline_keyboard" in markup:
            content["reply_markup"] = markup  # Telegram echoes only inline keyboards
        message = self._new_message(chat, self._bot_sender(), thread_id, content)
        chat.sources[message["message_id"]] = source
        self._outbox.append((chat.id, copy.deepcopy(message)))
        return copy.deepcopy(message)

    async def _edit_message_text(self, params: _Params) -> JSON:
        chat = self._resolve_chat(params, sending=False)
        message = self._own_message(chat, params, "message to edit not found")
        if message["from"]["id"] != self.bot_user["id"]:
            raise _bad("message can't be edited")
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        parsed, source = self._message_text(params)
        markup = self._reply_markup(params, inline_only=True)
        # Telegram drops the keyboard when an edit omits reply_markup.
        same_text = (message["text"], message.get("entities", [])) == (
            parsed.text,
            parsed.entities,
        )
        if same_text and message.get("reply_markup") == markup:
            raise _bad(_NOT_MODIFIED.removeprefix("Bad Request: "))
        message["text"] = parsed.text
        _set_or_drop(message, "entities", parsed.entities or None)
        _set_or_drop(message, "reply_markup", markup)
        message["edit_date"] = int(self._clock())
        chat.sources[message["message_id"]] = source
        return copy.deepcopy(message)

    async def _edit_message_reply_markup(self, params: _Params) -> JSON:
        chat = self._resolve_chat(params, sending=False)
        message = self._own_message(chat, params, "message to edit not found")
        if message["from"]["id"] != self.bot_user["id"]:
            raise _bad("message can't be edited")
        markup = self._reply_markup(params, inline_only=True)
        if message.get("reply_markup") == markup:
            raise _bad(_NOT_MODIFIED.removeprefix("Bad Request: "))
        _set_or_drop(message, "reply_markup", markup)
        message["edit_date"] = int(self._clock())
        return copy.deepcopy(message)

    async def _delete_message(self, params: _Params) -> bool:
        chat = self._resolve_chat(params, sending=False)
        message = self._own_message(chat, params, "message to delete not found")
        # Without admin rights a bot may delete only its own messages outside private chats.
        if message["from"]["id"] != self.bot_user["id"] and chat.type != "private":
            raise _bad("message can't be deleted")
        del chat.messages[message["message_id"]]
        chat.sources.pop(message["message_id"], None)
        return True

    async def _answer_callback_query(self, params: _Params) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        created = self._queries.get(query_id)
        if created is None or time.monotonic() - created > self.callback_query_ttl:
            raise _bad(_QUERY_INVALID.removeprefix("Bad Request: "))
        text = params.get("text")
        if text is not None and utf16_len(str(text)) > MAX_CALLBACK_ANSWER:
            raise _bad("MESSAGE_TOO_LONG")
        del self._queries[query_id]  # a query can be answered once
        self.callback_answers.append(
            {
                "callback_query_id": query_id,
                "text": text,
                "show_alert": _as_bool(params.get("show_alert")),
                "url": params.get("url"),
                "cache_time": params.get("cache_time"),
            }
        )
        return True

    async def _get_chat(self, params: _Params) -> JSON:
        raw = params.get("chat_id")
        user = None
        if raw is not None and not str(raw).startswith("@"):
            user = self._users.get(_as_int(raw, "chat not found"))
        if user is not None:
            chat_info = _Chat(user.id, "private", user=user).to_dict()
        else:
            chat_info = self._resolve_chat(params, sending=False).to_dict()
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

    async def _get_chat_member(self, params: _Params) -> JSON:
        chat = self._resolve_chat(params, sending=False)
        user_id = _as_int(params.get("user_id", ""), "user not found")
        if user_id == self.bot_user["id"]:
            status = "member" if chat.bot_member else "left"
            return {"status": status, "user": self._bot_sender()}
        user = self._users.get(user_id)
        if user is None:
            raise _bad("user not found")
        if chat.user is not None:
            status = "member" if chat.user.id == user_id else "left"
        elif chat.members and chat.members[0] == user_id:
            return {"status": "creator", "user": user.to_dict(), "is_anonymous": False}
        else:
            status = "member" if user_id in chat.members else "left"
        return {"status": status, "user": user.to_dict()}

    async def _send_chat_action(self, params: _Params) -> bool:
        chat = self._resolve_chat(params, sending=True)
        self._thread(chat, params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True


# ---------------------------------------------------------------------- module helpers


def _error(code: int, description: str, parameters: JSON | None = None) -> JSON:
    answer: JSON = {"ok": False, "error_code": code, "description": description}
    if parameters:
        answer["parameters"] = parameters
    return answer


def _lower(methods: Iterable[str] | None) -> frozenset[str] | None:
    return None if methods is None else frozenset(m.lower() for m in methods)


def _lang(params: _Params) -> str:
    return str(params.get("language_code") or "")


def _set_or_drop(message: JSON, key: str, value: Any) -> None:
    if value is None:
        message.pop(key, None)
    else:
        message[key] = value


def _decode_params(content_type: str, body: bytes, query: str) -> _Params:
    """Decode a request like the Bot API: query string, then JSON/form/multipart body.

    PTB sends form fields whose non-string values are JSON-encoded; the ``_as_*``
    helpers accept both those strings and real JSON types.
    """
    params: _Params = dict(parse_qsl(query, keep_blank_values=True))
    mime = content_type.split(";")[0].strip().lower()
    if not body:
        return params
    if mime == "application/json":
        try:
            data = json.loads(body)
        except ValueError as err:
            raise _bad("can't parse JSON object") from err
        if not isinstance(data, dict):
            raise _bad("can't parse JSON object")
        params.update(data)
    elif mime == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        for part in parsed.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                is_file = part.get_filename() is not None
                params[name] = payload if is_file else payload.decode("utf-8", "replace")
    else:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def _as_int(value: Any, error: str) -> int:
    if isinstance(value, bool):
        raise _bad(error)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise _bad(error)


def _as_float(value: Any, error: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value))
    except ValueError as err:
        raise _bad(error) from err


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def _as_json(value: Any, error: str) -> Any:
    """Decode a JSON-encoded form field; pass through values that came as JSON already."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as err:
        raise _bad(error.removeprefix("Bad Request: ")) from err


def _check_inline_keyboard(rows: Any) -> list[list[JSON]]:
    """Validate an inline keyboard the way Telegram does; return it unchanged."""
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise _bad(_BAD_MARKUP.removeprefix("Bad Request: "))
    if sum(len(r) for r in rows) > MAX_BUTTONS:
        raise _bad("reply markup is too long")
    prefix = "can't parse inline keyboard button: "
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad(prefix + 'Field "text" must be of type String')
            if not button["text"].strip():
                raise _bad("BUTTON_TEXT_INVALID")
            actions = [a for a in _BUTTON_ACTIONS if button.get(a) is not None]
            if not actions:
                raise _bad(prefix + "Text buttons are unallowed in the inline keyboard")
            if len(actions) > 1:
                raise _bad(prefix + f"only one of {', '.join(actions)} may be used")
            data = button.get("callback_data")
            if data is not None and (
                not isinstance(data, str)
                or not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES
            ):
                raise _bad("BUTTON_DATA_INVALID")
            url = button.get("url")
            if url is not None and (
                not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https", "tg")
            ):
                raise _bad("BUTTON_URL_INVALID")
    return rows
